//! Time as the core sees it: a timestamp handed in through the decision context (the core has
//! no clock), and the UTC calendar windows that limits count in.
//!
//! Window boundaries, all UTC:
//! - **day**: 00:00:00.000 to 23:59:59.999;
//! - **week**: Monday 00:00 to Sunday 23:59:59.999 (ISO 8601 weeks);
//! - **month**: the 1st 00:00 to the last day 23:59:59.999;
//! - **lifetime**: never resets.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::limits::DAY_MS;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// The wall clock, for the shells around the core (actors, server): the core's own
    /// decisions never read it; they take `DecisionContext::now`. Saturates rather than
    /// wraps; a clock before 1970 reads as 0.
    pub fn now() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self(millis)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Days since 1970-01-01 (floor, so instants before the epoch land on the right day).
    pub fn day_number(self) -> i64 {
        self.0.div_euclid(DAY_MS)
    }

    /// `(year, month 1..=12, day 1..=31)` in UTC.
    pub fn civil_date(self) -> (i64, u32, u32) {
        civil_from_days(self.day_number())
    }

    pub fn saturating_add_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil_date();
        let ms_of_day = self.0.rem_euclid(DAY_MS);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1000 % 60,
            ms_of_day % 1000
        )
    }
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day number.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day number of a civil date (inverse of `civil_from_days`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The calendar windows a limit can count over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Day,
    Week,
    Month,
    Lifetime,
}

impl Window {
    pub const ALL: [Window; 4] = [Window::Day, Window::Week, Window::Month, Window::Lifetime];

    /// A number that is the same for every instant in one window and different across windows.
    pub fn id(self, at: Timestamp) -> i64 {
        match self {
            Window::Day => at.day_number(),
            // 1970-01-01 was a Thursday; shifting by three days puts Mondays on multiples of 7.
            Window::Week => (at.day_number() + 3).div_euclid(7),
            Window::Month => {
                let (year, month, _) = at.civil_date();
                year * 12 + i64::from(month) - 1
            }
            Window::Lifetime => 0,
        }
    }

    /// When the window containing `at` ends (the first instant of the next one); `None` for
    /// lifetime.
    pub fn resets_at(self, at: Timestamp) -> Option<Timestamp> {
        match self {
            Window::Day => Some(Timestamp((at.day_number() + 1) * DAY_MS)),
            Window::Week => Some(Timestamp(((Window::Week.id(at) + 1) * 7 - 3) * DAY_MS)),
            Window::Month => {
                let (year, month, _) = at.civil_date();
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                Some(Timestamp(
                    days_from_civil(next_year, next_month, 1) * DAY_MS,
                ))
            }
            Window::Lifetime => None,
        }
    }
}

/// A card's expiry month (ISO 8583 DE 14 is `YYMM`). The card is good through the last
/// instant of that month, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct YearMonth {
    pub year: u16,
    pub month: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YearMonthError {
    #[error("expiry must be four digits YYMM, got {0:?}")]
    Shape(String),
    #[error("expiry month must be 01..12, got {0}")]
    Month(u8),
}

impl YearMonth {
    pub fn new(year: u16, month: u8) -> Result<Self, YearMonthError> {
        if !(1..=12).contains(&month) {
            return Err(YearMonthError::Month(month));
        }
        Ok(Self { year, month })
    }

    /// Parses `YYMM` (years 2000..2099).
    pub fn parse_yymm(text: &str) -> Result<Self, YearMonthError> {
        let bytes = text.as_bytes();
        if bytes.len() != 4 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(YearMonthError::Shape(text.chars().take(8).collect()));
        }
        let year = 2000 + u16::from(bytes[0] - b'0') * 10 + u16::from(bytes[1] - b'0');
        let month = (bytes[2] - b'0') * 10 + (bytes[3] - b'0');
        Self::new(year, month)
    }

    pub fn to_yymm(self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }

    /// True once `now` is past the last instant of this month.
    pub fn has_passed(self, now: Timestamp) -> bool {
        let expiry_month = i64::from(self.year) * 12 + i64::from(self.month) - 1;
        Window::Month.id(now) > expiry_month
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(year: i64, month: u32, day: u32, hour: i64) -> Timestamp {
        Timestamp(days_from_civil(year, month, day) * DAY_MS + hour * 3_600_000)
    }

    #[test]
    fn civil_dates_round_trip() {
        for day in [
            -800_000i64,
            -1,
            0,
            1,
            59,
            60,
            11_016,
            19_000,
            20_000,
            2_932_896,
        ] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn days_reset_at_utc_midnight() {
        let late = at(2026, 11, 22, 23);
        let early = at(2026, 11, 23, 0);
        assert_ne!(Window::Day.id(late), Window::Day.id(early));
        assert_eq!(Window::Day.resets_at(late), Some(early));
    }

    #[test]
    fn weeks_run_monday_to_sunday() {
        // 2026-11-22 is a Sunday, 2026-11-23 a Monday.
        let sunday = at(2026, 11, 22, 12);
        let monday = at(2026, 11, 23, 0);
        let previous_monday = at(2026, 11, 16, 0);
        assert_eq!(Window::Week.id(sunday), Window::Week.id(previous_monday));
        assert_ne!(Window::Week.id(sunday), Window::Week.id(monday));
        assert_eq!(Window::Week.resets_at(sunday), Some(monday));
    }

    #[test]
    fn months_reset_on_the_first() {
        let end_of_feb = at(2028, 2, 29, 23);
        let march = at(2028, 3, 1, 0);
        assert_ne!(Window::Month.id(end_of_feb), Window::Month.id(march));
        assert_eq!(Window::Month.resets_at(end_of_feb), Some(march));
        assert_eq!(
            Window::Month.resets_at(at(2026, 12, 5, 1)),
            Some(at(2027, 1, 1, 0))
        );
        assert_eq!(Window::Lifetime.resets_at(march), None);
    }

    #[test]
    fn a_card_is_good_through_its_expiry_month() {
        let expiry = YearMonth::parse_yymm("2611").unwrap();
        assert!(!expiry.has_passed(at(2026, 11, 30, 23)));
        assert!(expiry.has_passed(at(2026, 12, 1, 0)));
        assert_eq!(expiry.to_yymm(), "2611");
        assert!(YearMonth::parse_yymm("2613").is_err());
        assert!(YearMonth::parse_yymm("26x1").is_err());
    }
}
