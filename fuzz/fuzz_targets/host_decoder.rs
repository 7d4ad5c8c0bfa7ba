// SPDX-License-Identifier: GPL-2.0

//! What the host receives from a guest: any bytes. Decoding never panics, and
//! whatever decodes encodes back to the same bytes (nothing is accepted that
//! the protocol cannot say).

#![no_main]

use hwconvey_proto::message::{decode_guest_msg, encode_ack, encode_request, GuestMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode_guest_msg(data) else { return };
    let mut buf = [0u8; 64];
    let n = match msg {
        GuestMsg::Request(req) => encode_request(&req, &mut buf),
        GuestMsg::Ack(generation) => encode_ack(generation, &mut buf),
    };
    assert_eq!(buf.get(..n.unwrap_or(0)), Some(data));
});
