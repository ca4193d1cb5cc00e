//! `strftime_now(format)`, the template global transformers defines as
//! `datetime.now().strftime(format)` (Llama-3 style templates print today's date with it).
//! The date is taken in UTC; the common directives are supported and an unknown one is an error.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
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
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CivilTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday.
    weekday: u32,
    /// 1-based day of the year.
    yearday: u32,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

impl CivilTime {
    /// Calendar time of a Unix timestamp (seconds), proleptic Gregorian, UTC.
    pub(crate) fn from_unix(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let secs = seconds.rem_euclid(86_400) as u32;
        // Days to civil date (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yearday =
            CUMULATIVE[(month - 1) as usize] + day + u32::from(month > 2 && is_leap(year));
        Self {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 3).rem_euclid(7) as u32,
            yearday,
        }
    }

    pub(crate) fn now() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Self::from_unix(seconds)
    }

    /// Python's `strftime` for the C-locale directives templates use.
    pub(crate) fn format(&self, format: &str) -> Result<String, String> {
        let mut out = String::with_capacity(format.len() + 16);
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(directive) = chars.next() else {
                return Err(format!(
                    "strftime_now: format {format:?} ends with a lone %"
                ));
            };
            let month = MONTHS[(self.month - 1) as usize];
            let weekday = WEEKDAYS[self.weekday as usize];
            match directive {
                'd' => out.push_str(&format!("{:02}", self.day)),
                'm' => out.push_str(&format!("{:02}", self.month)),
                'Y' => out.push_str(&format!("{:04}", self.year)),
                'y' => out.push_str(&format!("{:02}", self.year.rem_euclid(100))),
                'B' => out.push_str(month),
                'b' | 'h' => out.push_str(&month[..3]),
                'A' => out.push_str(weekday),
                'a' => out.push_str(&weekday[..3]),
                'H' => out.push_str(&format!("{:02}", self.hour)),
                'I' => out.push_str(&format!("{:02}", (self.hour + 11) % 12 + 1)),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'M' => out.push_str(&format!("{:02}", self.minute)),
                'S' => out.push_str(&format!("{:02}", self.second)),
                'j' => out.push_str(&format!("{:03}", self.yearday)),
                'w' => out.push_str(&((self.weekday + 1) % 7).to_string()),
                'u' => out.push_str(&(self.weekday + 1).to_string()),
                'F' => out.push_str(&format!(
                    "{:04}-{:02}-{:02}",
                    self.year, self.month, self.day
                )),
                'T' => out.push_str(&format!(
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                )),
                '%' => out.push('%'),
                other => {
                    return Err(format!(
                        "strftime_now: directive %{other} is not supported (use %d %m %Y %y %B %b %A %a %H %I %p %M %S %j %w %u %F %T)"
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's `datetime.fromtimestamp(ts, timezone.utc).strftime(format)` for fixed times
    /// (written by tools/refgen/processor_refs.py).
    #[test]
    fn formats_equal_python_strftime() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/strftime_cases.json");
        let cases: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cases = cases.as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let ts = case["timestamp"].as_i64().unwrap();
            let format = case["format"].as_str().unwrap();
            let got = CivilTime::from_unix(ts).format(format).unwrap();
            assert_eq!(got, case["expected"].as_str().unwrap(), "{ts} {format:?}");
        }
    }

    #[test]
    fn unknown_directives_are_errors() {
        let err = CivilTime::from_unix(0).format("%Q").unwrap_err();
        assert!(err.contains("%Q"), "{err}");
        assert!(CivilTime::from_unix(0).format("100%").is_err());
    }
}
