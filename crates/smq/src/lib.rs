//! stackhook-smq (work in progress)
mod arn;
mod client;
mod credentials;
mod error;
pub mod message;
mod notification;
pub mod signature;
mod xml;
pub use arn::{Arn, ResourceKind};
pub use client::*;
pub use credentials::Credentials;
pub use error::{Error, ErrorCode, Result, ServiceError};
pub use notification::{Notification, NotifyFormat};
