//! UTC timestamps in the two formats the signers need, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down UTC time: year, month, day, hour, minute, second.
fn parts(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    // Times before 1970 do not occur on a signing machine; clamp them to 0.
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `yyyy-MM-ddTHH:mm:ssZ`, as Alibaba's `x-acs-date` and V2 `Timestamp` want.
pub(crate) fn iso8601(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = parts(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `YYYYMMDDTHHMMSSZ`, as Huawei's `X-Sdk-Date` wants.
pub(crate) fn sdk_date(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = parts(time);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_secs(1_698_315_752);
        assert_eq!(iso8601(t), "2023-10-26T10:22:32Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_573_789_015);
        assert_eq!(sdk_date(t), "20191115T033655Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
    }
}
