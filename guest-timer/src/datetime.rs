//! Time zones and date-time text, shared by every timer kind.
//!
//! Kept in one place so that all kinds read `timezone`, `fire_at`, `dtstart` and `until` the
//! same way and resolve local times across daylight-saving changes by the same rule: a local
//! time that falls in a spring-forward gap becomes the first instant after the gap, and a
//! local time that occurs twice at fall-back becomes its first (earlier) occurrence.

use chrono::{
    DateTime, Duration, LocalResult, NaiveDateTime, Offset, SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::error::{excerpt, ParamError};

/// Reads an IANA time zone name (e.g. `Europe/Berlin`, `UTC`).
///
/// The exact name is tried first; a name that differs only in letter case (`europe/berlin`)
/// is accepted too and normalized to its canonical spelling, because operators type these
/// by hand and the mistake is unambiguous.
pub fn parse_timezone(name: &str) -> Result<Tz, ParamError> {
    let trimmed = name.trim();
    if let Ok(tz) = trimmed.parse::<Tz>() {
        return Ok(tz);
    }
    if let Some(tz) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
    {
        return Ok(*tz);
    }
    Err(ParamError::field(
        "timezone",
        format!(
            "Invalid timezone '{}': not an IANA time zone name; expected a name such as \
             'UTC', 'Europe/Berlin' or 'America/New_York'",
            excerpt(name)
        ),
    ))
}

/// Formats an instant the way every payload and spec does: RFC 3339 in UTC with a `Z`, and
/// only as many fractional digits as the instant needs.
pub fn format_utc(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Reads a date-time given as text.
///
/// Accepted: RFC 3339 with an offset (`2026-05-01T09:00:00Z`, `…+02:00`, a space instead of
/// the `T`), or a naive local date-time (`2026-05-01T09:00:00`, `2026-05-01 09:00`), which is
/// only meaningful with a time zone, so it needs `tz`. The error is a detail sentence for the
/// caller to prefix with the field's own message.
pub fn parse_datetime(text: &str, tz: Option<Tz>) -> Result<DateTime<Utc>, String> {
    let normalized = normalize(text.trim());
    let trimmed = &excerpt(text.trim());
    if let Ok(dt) = DateTime::parse_from_rfc3339(&normalized) {
        return Ok(dt.with_timezone(&Utc));
    }
    let naive = parse_naive(&normalized);
    match (naive, tz) {
        (Some(naive), Some(tz)) => resolve_local(&tz, naive)
            .ok_or_else(|| format!("'{trimmed}' cannot be placed in time zone {}", tz.name())),
        (Some(_), None) => Err(format!(
            "'{trimmed}' has no UTC offset; add one (e.g. {trimmed}Z or {trimmed}+02:00) \
             or give 'timezone' to read it as local time there"
        )),
        (None, _) => Err(format!(
            "'{trimmed}' is not an RFC 3339 date-time; expected e.g. 2026-05-01T09:00:00Z or \
             2026-05-01T09:00:00+02:00"
        )),
    }
}

/// RFC 3339 allows a space for the `T`; chrono's strict parser does not.
fn normalize(trimmed: &str) -> std::borrow::Cow<'_, str> {
    if trimmed.len() > 10 && trimmed.as_bytes()[10] == b' ' && trimmed.is_char_boundary(11) {
        format!("{}T{}", &trimmed[..10], &trimmed[11..]).into()
    } else {
        trimmed.into()
    }
}

fn parse_naive(normalized: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(normalized, format).ok())
}

/// A start time (an RRULE's `dtstart`) whose local wall time falls in a daylight-saving gap
/// of `zone`, read as RFC 5545 §3.3.5 says: with the offset in force before the gap. Applies
/// to a naive text (read in `given_zone`, which must then be `zone`) and to a text written
/// with exactly that offset as digits (`2026-03-29T02:30:00+01:00` in Europe/Berlin), which
/// names the same start; a `Z` time is an instant and never such a start. Returns the instant and the wall time, so that a schedule can keep the wall
/// time (02:30) rather than the instant's (03:30); `None` when the text is no such time.
pub fn start_in_gap(
    text: &str,
    given_zone: Option<Tz>,
    zone: Tz,
) -> Option<(DateTime<Utc>, NaiveDateTime)> {
    let normalized = normalize(text.trim());
    if normalized.ends_with(['Z', 'z']) {
        // A UTC instant names an instant, whatever the zone's wall clock says there.
        return None;
    }
    let (wall, written_offset) = match DateTime::parse_from_rfc3339(&normalized) {
        Ok(dt) => (dt.naive_local(), Some(dt.offset().local_minus_utc())),
        Err(_) if given_zone == Some(zone) => (parse_naive(&normalized)?, None),
        Err(_) => return None,
    };
    if !matches!(zone.from_local_datetime(&wall), LocalResult::None) {
        return None;
    }
    let before = zone
        .offset_from_utc_datetime(&wall.checked_sub_signed(Duration::days(1))?)
        .fix()
        .local_minus_utc();
    if written_offset.is_some_and(|offset| offset != before) {
        return None;
    }
    let instant = wall
        .checked_sub_signed(Duration::seconds(before.into()))?
        .and_utc();
    Some((instant, wall))
}

/// The instant a local wall-clock time names in `tz`.
///
/// A time that occurs twice (fall-back) gives the earlier instant; a time that does not occur
/// (spring-forward gap) gives the first instant after the gap, i.e. the moment of the change.
/// `None` only if the time is outside chrono's range.
pub fn resolve_local(tz: &Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Some(dt.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => first_instant_after_gap(tz, naive),
    }
}

/// The transition instant that ends the gap containing the local time `naive`.
///
/// With the offsets on either side of the gap, `naive − offset_after` lies at or before the
/// transition and `naive − offset_before` after it. Local time grows with the instant across a
/// gap, so a binary search over whole seconds finds the first instant whose local time has
/// passed `naive` — the end of the gap (tz data changes offsets on whole seconds).
fn first_instant_after_gap(tz: &Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    let day = Duration::days(1);
    let offset_before = tz
        .offset_from_utc_datetime(&naive.checked_sub_signed(day)?)
        .fix();
    let offset_after = tz
        .offset_from_utc_datetime(&naive.checked_add_signed(day)?)
        .fix();
    let seconds = |offset: chrono::FixedOffset| Duration::seconds(offset.local_minus_utc().into());
    let mut lo = naive
        .checked_sub_signed(seconds(offset_after))?
        .and_utc()
        .timestamp();
    let mut hi = naive
        .checked_sub_signed(seconds(offset_before))?
        .and_utc()
        .timestamp()
        + 1;
    if lo > hi {
        std::mem::swap(&mut lo, &mut hi);
    }
    let past_naive = |t: i64| -> Option<bool> {
        let instant = DateTime::from_timestamp(t, 0)?;
        Some(instant.with_timezone(tz).naive_local() > naive)
    };
    if !past_naive(hi)? {
        // Not the gap shape we expect (two changes within a day): read the time with the
        // offset in force before it, which still lands after the gap.
        return DateTime::from_timestamp(hi - 1, 0);
    }
    // Invariant: past_naive(hi) holds; the answer lies in (lo, hi].
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if past_naive(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn reads_rfc3339_with_offsets_and_space() {
        assert_eq!(
            parse_datetime("2026-05-01T09:00:00Z", None).unwrap(),
            utc("2026-05-01T09:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-05-01T09:00:00+02:00", None).unwrap(),
            utc("2026-05-01T07:00:00Z")
        );
        assert_eq!(
            parse_datetime(" 2026-05-01 09:00:00-05:00 ", None).unwrap(),
            utc("2026-05-01T14:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-05-01T09:00:00.250Z", None).unwrap(),
            utc("2026-05-01T09:00:00.25Z")
        );
    }

    #[test]
    fn naive_needs_a_zone() {
        let err = parse_datetime("2026-05-01T09:00:00", None).unwrap_err();
        assert!(err.contains("has no UTC offset"), "{err}");
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            parse_datetime("2026-05-01T09:00:00", Some(berlin)).unwrap(),
            utc("2026-05-01T07:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-05-01 09:00", Some(berlin)).unwrap(),
            utc("2026-05-01T07:00:00Z")
        );
        let err = parse_datetime("tomorrow", Some(berlin)).unwrap_err();
        assert!(err.contains("not an RFC 3339 date-time"), "{err}");
    }

    #[test]
    fn gap_resolves_to_first_instant_after_it() {
        let cases = [
            (
                "Europe/Berlin",
                "2026-03-29T02:30:00",
                "2026-03-29T01:00:00Z",
            ),
            (
                "America/New_York",
                "2026-03-08T02:15:30",
                "2026-03-08T07:00:00Z",
            ),
            (
                "Australia/Sydney",
                "2026-10-04T02:00:00",
                "2026-10-03T16:00:00Z",
            ),
        ];
        for (zone, local, expected) in cases {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(
                parse_datetime(local, Some(tz)).unwrap(),
                utc(expected),
                "{zone} {local}"
            );
        }
    }

    #[test]
    fn fall_back_resolves_to_earlier_instant() {
        let cases = [
            (
                "Europe/Berlin",
                "2026-10-25T02:30:00",
                "2026-10-25T00:30:00Z",
            ),
            (
                "America/New_York",
                "2026-11-01T01:30:00",
                "2026-11-01T05:30:00Z",
            ),
            (
                "Australia/Sydney",
                "2026-04-05T02:30:00",
                "2026-04-04T15:30:00Z",
            ),
        ];
        for (zone, local, expected) in cases {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(
                parse_datetime(local, Some(tz)).unwrap(),
                utc(expected),
                "{zone} {local}"
            );
        }
    }

    #[test]
    fn start_in_a_gap_keeps_the_offset_before_it() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let wall =
            NaiveDateTime::parse_from_str("2026-03-29T02:30:00", "%Y-%m-%dT%H:%M:%S").unwrap();
        for text in ["2026-03-29T02:30:00", "2026-03-29 02:30:00+01:00"] {
            assert_eq!(
                start_in_gap(text, Some(berlin), berlin),
                Some((utc("2026-03-29T01:30:00Z"), wall)),
                "{text}"
            );
        }
        assert_eq!(
            start_in_gap("2026-03-29T02:30:00+01:00", None, berlin),
            Some((utc("2026-03-29T01:30:00Z"), wall))
        );
        // Not in a gap, another offset, or naive without the zone: not such a start.
        for (text, given) in [
            ("2026-03-29T03:30:00", Some(berlin)),
            ("2026-03-29T02:30:00+02:00", Some(berlin)),
            ("2026-03-29T02:30:00Z", Some(berlin)),
            (
                "2026-03-29T01:30:00Z",
                Some("Europe/London".parse().unwrap()),
            ),
            ("2026-03-29T02:30:00", None),
            ("garbage", Some(berlin)),
        ] {
            assert_eq!(start_in_gap(text, given, berlin), None, "{text}");
        }
    }

    #[test]
    fn timezone_names() {
        assert_eq!(
            parse_timezone("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(
            parse_timezone("europe/berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(parse_timezone("UTC").unwrap().name(), "UTC");
        let err = parse_timezone("Mars/Olympus").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("timezone"));
        assert!(
            err.message.starts_with("Invalid timezone 'Mars/Olympus': "),
            "{}",
            err.message
        );
    }

    #[test]
    fn formats_with_z_and_minimal_fraction() {
        assert_eq!(
            format_utc(utc("2026-05-01T09:00:00+02:00")),
            "2026-05-01T07:00:00Z"
        );
        assert_eq!(
            format_utc(utc("2026-05-01T09:00:00.123456789Z")),
            "2026-05-01T09:00:00.123456789Z"
        );
        assert_eq!(
            format_utc(utc("2026-05-01T09:00:00.5Z")),
            "2026-05-01T09:00:00.500Z"
        );
    }
}
