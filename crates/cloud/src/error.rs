//! The cloud clients' one error type.

pub use stackhook::error::error_chain;

use crate::api_error::ApiError;

/// What can go wrong calling a cloud API.
///
/// A handler whose `Error` is this type (or that boxes it) fails with its
/// text as the FAILED answer's Reason. Each variant carries its cause in the
/// message, never also as a source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request parameter failed validation before anything was sent.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The parameter, flag or property at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The service answered with an error (after any retries).
    #[error(transparent)]
    Api(Box<ApiError>),

    /// Credentials are missing or unusable; the message names the variable
    /// or header.
    #[error("credentials: {0}")]
    Credentials(String),

    /// The service could not be reached, or its answer could not be read.
    #[error("{service}: {message}")]
    Transport {
        /// The service called (`ROS`, `OOS`, `RFS`).
        service: &'static str,
        /// What failed, with attempts made.
        message: String,
    },

    /// The HTTP client could not be set up.
    #[error("configuration error: {0}")]
    Config(String),
}

impl Error {
    /// The service's error answer, when this is [`Error::Api`].
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(error) => Some(error),
            _ => None,
        }
    }

    /// An [`Error::Validation`] naming `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Result` with the cloud clients' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
