//! The built-in handlers that `stackhook serve` registers.
//!
//! Each lives in its own file and is written as a model of how to write one:
//! typed properties, lenient numbers and booleans, a short doc comment with a
//! ROS template snippet, and unit tests at the bottom.
//!
//! | resource type | handler | what it does |
//! |---|---|---|
//! | `Custom::Echo` | [`Echo`] | returns its properties as Data; `FailWith` makes it fail |
//! | `Custom::RandomString` | [`RandomString`] | a random string, stable across updates that do not change how it is generated |
//! | `Custom::Wait` | [`Wait`] | waits `Seconds` by polling (a model for long-running work) |

pub mod echo;
pub mod random_string;
pub mod wait;

pub use echo::Echo;
pub use random_string::RandomString;
pub use wait::Wait;

use crate::Router;

/// A router with every built-in handler, keyed with `secret_key` where a
/// handler needs one (see [`RandomString`]).
pub fn builtin_router(secret_key: &[u8]) -> Router {
    Router::new()
        .route(Echo::RESOURCE_TYPE, Echo)
        .route(RandomString::RESOURCE_TYPE, RandomString::new(secret_key))
        .route(Wait::RESOURCE_TYPE, Wait)
}
