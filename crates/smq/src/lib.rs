//! stackhook-smq (work in progress)
mod arn;
mod credentials;
mod error;
pub mod signature;
mod xml;
pub use arn::{Arn, ResourceKind};
pub use credentials::Credentials;
pub use error::{Error, ErrorCode, Result, ServiceError};
