//! Times as Norwegians read them: Norwegian time (CET, CEST in summer, by the
//! EU rule: from 01:00 UTC on the last Sunday of March to 01:00 UTC on the
//! last Sunday of October), written out in the page's language. No I/O.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, UtcOffset, Weekday};

use super::i18n::Lang;

/// The last Sunday of `month` in `year`, at 01:00 UTC.
fn last_sunday_0100(year: i32, month: Month) -> Option<OffsetDateTime> {
    let next = month.next();
    let first_of_next = Date::from_calendar_date(
        if next == Month::January {
            year + 1
        } else {
            year
        },
        next,
        1,
    )
    .ok()?;
    let mut day = first_of_next.previous_day()?;
    while day.weekday() != Weekday::Sunday {
        day = day.previous_day()?;
    }
    Some(day.with_hms(1, 0, 0).ok()?.assume_utc())
}

/// Norwegian time at `t`.
pub fn norwegian(t: OffsetDateTime) -> OffsetDateTime {
    let utc = t.to_offset(UtcOffset::UTC);
    let summer = match (
        last_sunday_0100(utc.year(), Month::March),
        last_sunday_0100(utc.year(), Month::October),
    ) {
        (Some(start), Some(end)) => utc >= start && utc < end,
        _ => false,
    };
    let hours = if summer { 2 } else { 1 };
    UtcOffset::from_hms(hours, 0, 0).map_or(utc, |o| utc.to_offset(o))
}

const MONTHS_NB: [&str; 12] = [
    "januar",
    "februar",
    "mars",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "desember",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// An RFC 3339 time as the page shows it (`7. desember 2026 kl. 04.56`,
/// `7 December 2026, 04:56`); the text as given when it does not parse.
pub fn shown(rfc3339: &str, lang: Lang) -> String {
    let Ok(t) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_string();
    };
    let t = norwegian(t);
    let month = usize::from(u8::from(t.month())) - 1;
    match lang {
        // Nynorsk has the same month names as Bokmål.
        Lang::Nb | Lang::Nn => format!(
            "{}. {} {} kl. {:02}.{:02}",
            t.day(),
            MONTHS_NB[month],
            t.year(),
            t.hour(),
            t.minute()
        ),
        Lang::En => format!(
            "{} {} {}, {:02}:{:02}",
            t.day(),
            MONTHS_EN[month],
            t.year(),
            t.hour(),
            t.minute()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winter_and_summer_time() {
        assert_eq!(
            shown("2026-12-07T03:56:27Z", Lang::Nb),
            "7. desember 2026 kl. 04.56"
        );
        assert_eq!(
            shown("2026-12-07T03:56:27Z", Lang::En),
            "7 December 2026, 04:56"
        );
        assert_eq!(
            shown("2026-07-01T10:00:00Z", Lang::Nn),
            "1. juli 2026 kl. 12.00"
        );
        // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(
            shown("2026-03-29T00:59:00Z", Lang::Nb),
            "29. mars 2026 kl. 01.59"
        );
        assert_eq!(
            shown("2026-03-29T01:00:00Z", Lang::Nb),
            "29. mars 2026 kl. 03.00"
        );
        assert_eq!(
            shown("2026-10-25T00:59:00Z", Lang::Nb),
            "25. oktober 2026 kl. 02.59"
        );
        assert_eq!(
            shown("2026-10-25T01:00:00Z", Lang::Nb),
            "25. oktober 2026 kl. 02.00"
        );
        assert_eq!(
            shown("2026-12-31T23:30:00Z", Lang::Nb),
            "1. januar 2027 kl. 00.30"
        );
        assert_eq!(shown("not a time", Lang::Nb), "not a time");
    }
}
