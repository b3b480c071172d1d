//! Every control code and record through the IOCTL decoders: see `checks/ioctl_decode.rs`.
#![no_main]

include!("../checks/ioctl_decode.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check_ioctl_decode(data));
