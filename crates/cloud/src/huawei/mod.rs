//! Huawei Cloud: the AK/SK signer and the RFS (Resource Formation) client.

pub mod rfs;
pub mod signer;

pub use rfs::RfsClient;
