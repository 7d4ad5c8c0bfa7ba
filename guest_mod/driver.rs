// SPDX-License-Identifier: GPL-2.0

//! The virtio driver for the hwconvey device: probe, the queues' start, and unbind.
//!
//! The device is untrusted (a confidential guest must not trust its host): the configuration
//! space is validated before anything is set up from it.

use crate::bound::BoundDevices;
use crate::device::Guest;
use crate::proto::{
    device::{
        CONFIG_GENERATION, CONFIG_GUEST_ID, CONFIG_MAX_MSG_SIZE, CONFIG_SIZE, EVENTQ, F_ACK,
        F_DELTA, F_REQUEST, REQUESTQ, VIRTIO_ID_HWCONVEY,
    },
    message::{HEADER_SIZE, MAX_MSG_SIZE},
};
use crate::receive::EVENT_BUFFERS;
use crate::sampler::SampleTimer;
use crate::sysfs::device_files;
use core::mem::offset_of;
use core::sync::atomic::Ordering;
use kernel::{
    device::{Bound, Core},
    prelude::*,
    sync::Arc,
    sysfs::{DeviceGroup, Notifier},
    time::hrtimer::{ArcHrTimerHandle, HrTimerPointer},
    uapi,
    virtio::{self, virtqueue::Virtqueues, ConfigReader},
};

/// The hwconvey device's configuration space, as `include/uapi/linux/virtio_hwconvey.h` lays
/// it out: the driver reads it only through this layout.
type HwcConfig = uapi::virtio_hwconvey_config;

// The uapi header and the protocol crate describe the same device.
const _: () = assert!(
    core::mem::size_of::<HwcConfig>() == CONFIG_SIZE
        && offset_of!(HwcConfig, max_msg_size) == CONFIG_MAX_MSG_SIZE
        && offset_of!(HwcConfig, guest_id) == CONFIG_GUEST_ID
        && offset_of!(HwcConfig, generation) == CONFIG_GENERATION
        && uapi::VIRTIO_ID_HWCONVEY == VIRTIO_ID_HWCONVEY
        && uapi::VIRTIO_HWCONVEY_EVENTQ == EVENTQ as u32
        && uapi::VIRTIO_HWCONVEY_REQUESTQ == REQUESTQ as u32
        && uapi::VIRTIO_HWCONVEY_F_DELTA == F_DELTA
        && uapi::VIRTIO_HWCONVEY_F_REQUEST == F_REQUEST
        && uapi::VIRTIO_HWCONVEY_F_ACK == F_ACK
        && uapi::VIRTIO_HWCONVEY_MAX_MSG_SIZE as usize == MAX_MSG_SIZE
);

/// The driver's data for a bound device.
#[pin_data]
pub(crate) struct GuestDevice {
    // Dropped first: cancels the sampling timer, which holds a reference to the queues.
    _sampler: ArcHrTimerHandle<SampleTimer>,
    pub(crate) vqs: Arc<Virtqueues<Guest>>,
}

pub(crate) struct GuestDriver;

kernel::virtio_device_table!(
    VIRTIO_TABLE,
    @none,
    [virtio::DeviceId::new(VIRTIO_ID_HWCONVEY)]
);

impl GuestDriver {
    fn setup(dev: &virtio::Device<Bound>) -> Result<Arc<Virtqueues<Guest>>> {
        let (max_msg, guest_id) = dev.read_config(|r: &ConfigReader<'_, HwcConfig>| {
            Ok::<_, Error>((
                r.read_u32(offset_of!(HwcConfig, max_msg_size))?,
                r.read_u32(offset_of!(HwcConfig, guest_id))?,
            ))
        })??;
        // Messages from this device must fit the buffers this driver posts.
        let max_msg = usize::try_from(max_msg)?;
        if !(HEADER_SIZE..=MAX_MSG_SIZE).contains(&max_msg) {
            dev_err!(
                dev.as_ref(),
                "bad max_msg_size {} in config space\n",
                max_msg
            );
            return Err(EINVAL);
        }
        let vqs = Virtqueues::new(
            dev,
            &[c"events", c"requests"],
            Guest::new(
                dev.has_feature(F_DELTA),
                dev.has_feature(F_ACK),
                dev.has_feature(F_REQUEST),
            ),
        )?;
        {
            let mut q = vqs.lock();
            for _ in 0..EVENT_BUFFERS {
                q.add_inbuf(
                    usize::from(EVENTQ),
                    KBox::new([0u8; MAX_MSG_SIZE], GFP_KERNEL)?,
                )?;
            }
            q.kick(usize::from(EVENTQ))?;
        }
        dev_info!(
            dev.as_ref(),
            "hwconvey device: guest id {}, deltas {}, requests {}, acks {}\n",
            guest_id,
            dev.has_feature(F_DELTA),
            dev.has_feature(F_REQUEST),
            dev.has_feature(F_ACK)
        );
        dev.ready();
        Ok(vqs)
    }
}

impl virtio::Driver for GuestDriver {
    type Context = Arc<BoundDevices>;
    type Data<'bound> = GuestDevice;

    const ID_TABLE: virtio::IdTable = &VIRTIO_TABLE;
    const FEATURES: &'static [u32] = &[F_DELTA, F_REQUEST, F_ACK];

    fn probe<'bound>(
        dev: &'bound virtio::Device<Core<'_>>,
        _devices: &'bound Arc<BoundDevices>,
    ) -> impl PinInit<GuestDevice, Error> + 'bound {
        let vqs = Self::setup(dev);
        try_pin_init!(GuestDevice {
            vqs: vqs?,
            _sampler: Arc::pin_init(SampleTimer::new(vqs.clone()), GFP_KERNEL)?
                .start(SampleTimer::period()),
        })
    }

    fn attributes(
        _dev: &virtio::Device<Bound>,
        this: Pin<&GuestDevice>,
        _devices: &Arc<BoundDevices>,
    ) -> Result<Option<DeviceGroup>> {
        device_files(this.vqs.clone()).map(Some)
    }

    fn files_added(
        dev: &virtio::Device<Bound>,
        this: Pin<&GuestDevice>,
        devices: &Arc<BoundDevices>,
    ) -> Result {
        // The device's `events` file is in place: updates wake its pollers from now on. A
        // device's state is bound once: the slot is empty.
        let events = Notifier::of_device_file(dev.as_ref(), c"events")?;
        this.vqs.handler().events.populate(events);
        // An update applied since the file appeared woke no one: wake its pollers now.
        if let Some(n) = this.vqs.handler().events.as_ref() {
            n.notify();
        }
        devices.attach(dev.as_ref(), &this.vqs)
    }

    fn unbind<'bound>(
        dev: &'bound virtio::Device<Core<'_>>,
        this: Pin<&GuestDevice>,
        devices: &Arc<BoundDevices>,
    ) {
        devices.detach(&this.vqs);
        let s = &this.vqs.handler().stats;
        dev_info!(
            dev.as_ref(),
            "unbound: {} messages received ({} snapshots, {} deltas, {} responses), {} bad, {} sent\n",
            s.received.load(Ordering::Relaxed),
            s.snapshots.load(Ordering::Relaxed),
            s.deltas.load(Ordering::Relaxed),
            s.responses.load(Ordering::Relaxed),
            s.bad.load(Ordering::Relaxed),
            s.sent.load(Ordering::Relaxed),
        );
    }
}
