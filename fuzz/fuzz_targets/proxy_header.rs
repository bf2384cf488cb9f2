//! PROXY protocol headers as a load balancer (or anyone on its address) sends them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveweb::server::proxy_protocol::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Header { len, .. } = parse(data) {
        assert!(len <= data.len());
    }
});
