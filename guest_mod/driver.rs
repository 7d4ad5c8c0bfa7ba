// SPDX-License-Identifier: GPL-2.0

//! The virtio driver for the hwconvey device: probe, the queues' start, and unbind.
//!
//! The device is untrusted (a confidential guest must not trust its host): the configuration
//! space is validated before anything is set up from it.

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
use core::mem::offset_of;
use core::sync::atomic::Ordering;
use kernel::{
    device::{Bound, Core},
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    sysfs::Notifier,
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

/// The device the guest's files report on, and whom they wake: the driver-wide data, shared by
/// the driver (its [`virtio::Registration`]'s context) and the module's files.
///
/// # Locks
///
/// `inner` comes last in the lock order of [`Guest`]: the receive path takes it, under the
/// queues, to wake the `events` file's pollers, and nothing holds it while taking another.
#[pin_data]
pub(crate) struct Reported {
    #[pin]
    inner: Mutex<ReportedInner>,
}

/// What [`Reported`]'s lock guards.
struct ReportedInner {
    /// The device the files report on: the first that probed, while it is bound; then the
    /// next of `others`.
    vqs: Option<Arc<Virtqueues<Guest>>>,
    /// The other bound devices, in the order they probed.
    others: KVec<Arc<Virtqueues<Guest>>>,
    /// Wakes those who poll the `events` file, while the files exist.
    events: Option<Notifier>,
}

impl Reported {
    /// No device, and no files yet.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                inner <- new_mutex!(ReportedInner {
                    vqs: None,
                    others: KVec::new(),
                    events: None,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Makes `vqs` the device the files report on if they report on none (the first device
    /// that probes), else keeps it for when the reported one goes. Out of memory, nothing is
    /// recorded and the probe fails.
    fn attach(&self, vqs: &Arc<Virtqueues<Guest>>) -> Result {
        let mut inner = self.inner.lock();
        if inner.vqs.is_none() {
            inner.vqs = Some(vqs.clone());
            // The files report on another device: their counters start again.
            if let Some(n) = inner.events.as_ref() {
                n.notify();
            }
        } else {
            inner.others.push(vqs.clone(), GFP_KERNEL)?;
        }
        Ok(())
    }

    /// Forgets `vqs`; if the files reported on it, they report on the next bound device.
    fn detach(&self, vqs: &Virtqueues<Guest>) {
        let mut inner = self.inner.lock();
        if inner.vqs.as_deref().is_some_and(|c| core::ptr::eq(c, vqs)) {
            inner.vqs = inner.others.remove(0).ok();
            if let Some(n) = inner.events.as_ref() {
                n.notify();
            }
        } else {
            inner.others.retain(|o| !core::ptr::eq(&**o, vqs));
        }
    }

    /// The device the guest's files report on; `ENODEV` without one.
    pub(crate) fn device(&self) -> Result<Arc<Virtqueues<Guest>>> {
        self.inner.lock().vqs.clone().ok_or(ENODEV)
    }

    /// Sets (or, with `None`, drops) what wakes those who poll the `events` file: the files'
    /// part, for the time they exist.
    pub(crate) fn set_events_notifier(&self, events: Option<Notifier>) {
        let old = core::mem::replace(&mut self.inner.lock().events, events);
        drop(old);
    }

    /// Wakes those who poll the `events` file if `guest`, whose copy or answers changed, is the
    /// device the files report on.
    pub(crate) fn events_changed(&self, guest: &Guest) {
        let inner = self.inner.lock();
        let reported = inner
            .vqs
            .as_deref()
            .is_some_and(|v| core::ptr::eq(v.handler(), guest));
        if let (true, Some(n)) = (reported, inner.events.as_ref()) {
            n.notify();
        }
    }
}

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
    fn setup(
        dev: &virtio::Device<Bound>,
        reported: &Arc<Reported>,
    ) -> Result<Arc<Virtqueues<Guest>>> {
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
                reported.clone(),
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
    type Context = Arc<Reported>;
    type Data<'bound> = GuestDevice;

    const ID_TABLE: virtio::IdTable = &VIRTIO_TABLE;
    const FEATURES: &'static [u32] = &[F_DELTA, F_REQUEST, F_ACK];

    fn probe<'bound>(
        dev: &'bound virtio::Device<Core<'_>>,
        reported: &'bound Arc<Reported>,
    ) -> impl PinInit<GuestDevice, Error> + 'bound {
        let vqs = Self::setup(dev, reported);
        try_pin_init!(GuestDevice {
            vqs: vqs?,
            _sampler: Arc::pin_init(SampleTimer::new(vqs.clone()), GFP_KERNEL)?
                .start(SampleTimer::period()),
        })
        // Last: only a device whose probe succeeds is recorded.
        .pin_chain(|this| reported.attach(&this.vqs))
    }

    fn unbind<'bound>(
        dev: &'bound virtio::Device<Core<'_>>,
        this: Pin<&GuestDevice>,
        reported: &Arc<Reported>,
    ) {
        reported.detach(&this.vqs);
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
