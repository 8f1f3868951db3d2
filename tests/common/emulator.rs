//! The API emulator set up the way the cloud tests use it.

use stackhook_testing::api_emulator::{ApiEmulator, RecordedCall, Reply};

pub(crate) const HUAWEI_AK: &str = ApiEmulator::HUAWEI_AK;
pub(crate) const HUAWEI_SK: &str = ApiEmulator::HUAWEI_SK;
pub(crate) const PROJECT: &str = "77b6a44cba5143ab91d13ab9a8ff44fd";

/// An emulator with the default keys, answering `script` first.
pub(crate) async fn alibaba(script: Vec<Reply>) -> ApiEmulator {
    let emulator = ApiEmulator::start().await.expect("emulator");
    for reply in script {
        emulator.answer_next(1, reply);
    }
    emulator
}

/// An emulator answering `script` first, then `default` for ever.
pub(crate) async fn huawei(default: Reply, script: Vec<Reply>) -> ApiEmulator {
    let emulator = alibaba(script).await;
    emulator.answer_always(default);
    emulator
}

/// The only call, asserting it verified.
pub(crate) fn single(emulator: &ApiEmulator) -> RecordedCall {
    let call = emulator
        .only_call()
        .unwrap_or_else(|| panic!("{:#?}", emulator.calls()));
    assert!(call.signature.is_verified(), "{:?}", call.signature);
    call
}
