//! Alibaba Cloud OpenAPI (ACS): the two signature versions and the RPC
//! client ROS and OOS share.

pub mod rpc_client;
pub mod signature_v2;
pub mod signature_v3;

pub use rpc_client::{RpcClient, RpcResponse, SignatureVersion};
