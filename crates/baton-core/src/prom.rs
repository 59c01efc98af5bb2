//! Parsing the Prometheus text exposition format that apps serve on `/metrics`.
//!
//! `name{label="value",...} value [timestamp]` lines; `#` lines (`HELP`, `TYPE`, comments)
//! and blank lines are skipped. Label values may hold the escapes `\\`, `\"` and `\n`;
//! values may be `+Inf`, `-Inf` or `NaN`; a timestamp (integer milliseconds) is checked and
//! dropped, since the scraper knows when it read. The newer quoted form
//! `{"name.with.dots", label="v"} 1` is accepted too.

/// One sample: a metric name, its labels in the order written, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `http_requests_total` or `..._bucket`.
    pub name: String,
    /// Label pairs, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (may be infinite or NaN).
    pub value: f64,
}

/// A line the parser could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics line {line}: {problem}: {text:?}")]
pub struct PromError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: &'static str,
    /// The line, cut to 120 characters.
    pub text: String,
}

/// Parses a whole exposition into its samples, in order.
pub fn parse(text: &str) -> Result<Vec<Sample>, PromError> {
    let mut samples = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw
            .strip_suffix('\r')
            .unwrap_or(raw)
            .trim_start_matches([' ', '\t']);
        if line.trim_end().is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = Line { rest: line }.sample().map_err(|problem| PromError {
            line: i + 1,
            problem,
            text: line.chars().take(120).collect(),
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// The sum of the values of every sample called `name`, over all label sets; `None` when
/// there is none. A NaN sample makes the sum NaN.
pub fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    let mut values = samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .peekable();
    values.peek()?;
    Some(values.sum())
}

/// The unread rest of one sample line.
struct Line<'a> {
    rest: &'a str,
}

type Parsed<T> = Result<T, &'static str>;

// === impl Line ===

impl<'a> Line<'a> {
    fn sample(mut self) -> Parsed<Sample> {
        let mut name = self.identifier(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let mut labels = Vec::new();
        let mut gap = self.blanks();
        if self.eat('{') {
            self.labels(&mut name, &mut labels)?;
            gap = self.blanks();
        }
        let name = name
            .filter(|n| !n.is_empty())
            .ok_or("expected a metric name")?;
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("a metric name cannot start with a digit");
        }
        if gap == 0 && !self.rest.is_empty() {
            return Err("expected a blank between the metric and its value");
        }
        let value = self.token().ok_or("expected a value after the metric")?;
        let value = value
            .parse::<f64>()
            .map_err(|_| "the value is not a number")?;
        if let Some(ts) = self.token() {
            ts.parse::<i64>()
                .map_err(|_| "the timestamp is not whole milliseconds")?;
        }
        if self.token().is_some() {
            return Err("unexpected text after the value and timestamp");
        }
        Ok(Sample {
            name,
            labels,
            value,
        })
    }

    /// `label="value", ...}` after the opening brace; a quoted string alone is the name.
    fn labels(
        &mut self,
        name: &mut Option<String>,
        labels: &mut Vec<(String, String)>,
    ) -> Parsed<()> {
        loop {
            self.blanks();
            if self.eat('}') {
                return Ok(());
            }
            let key = if self.rest.starts_with('"') {
                self.quoted()?
            } else {
                self.identifier(|c| c.is_ascii_alphanumeric() || c == '_')
                    .filter(|k| !k.is_empty())
                    .ok_or("expected a label name")?
            };
            self.blanks();
            if self.eat('=') {
                self.blanks();
                if !self.rest.starts_with('"') {
                    return Err("expected a quoted label value");
                }
                labels.push((key, self.quoted()?));
            } else if name.is_none() && self.rest.starts_with([',', '}']) {
                *name = Some(key);
            } else {
                return Err("expected '=' after a label name");
            }
            self.blanks();
            if !self.eat(',') && !self.rest.starts_with('}') {
                return Err("expected ',' or '}' after a label");
            }
        }
    }

    /// A `"..."` string with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Parsed<String> {
        let mut out = String::new();
        let mut chars = self.rest[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 2..];
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    _ => return Err("invalid escape in a quoted string: use \\\\, \\\" or \\n"),
                },
                c => out.push(c),
            }
        }
        Err("unterminated quoted string")
    }

    /// The longest prefix of characters that `ok`, or `None` if the line starts otherwise.
    fn identifier(&mut self, ok: impl Fn(char) -> bool) -> Option<String> {
        let end = self.rest.find(|c: char| !ok(c)).unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        (!word.is_empty()).then(|| word.to_string())
    }

    /// Skips spaces and tabs; returns how many.
    fn blanks(&mut self) -> usize {
        let before = self.rest.len();
        self.rest = self.rest.trim_start_matches([' ', '\t']);
        before - self.rest.len()
    }

    fn eat(&mut self, c: char) -> bool {
        self.rest
            .strip_prefix(c)
            .map(|rest| self.rest = rest)
            .is_some()
    }

    /// The next blank-separated token, if any.
    fn token(&mut self) -> Option<&'a str> {
        self.blanks();
        let end = self.rest.find([' ', '\t']).unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        (!token.is_empty()).then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Prometheus documentation ("Exposition formats").
    const EXAMPLE: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
"#;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_documented_example() {
        let s = parse(EXAMPLE).unwrap();
        assert_eq!(s.len(), 9);
        assert_eq!(s[0].name, "http_requests_total");
        assert_eq!(s[0].labels, labels(&[("method", "post"), ("code", "200")]));
        assert_eq!(s[0].value, 1027.0);
        assert_eq!(s[1].value, 3.0);
        assert_eq!(
            s[2].labels,
            labels(&[
                ("path", r"C:\DIR\FILE.TXT"),
                ("error", "Cannot find file:\n\"FILE.TXT\"")
            ])
        );
        assert_eq!(s[2].value, 1.458255915e9);
        assert_eq!(
            (s[3].name.as_str(), s[3].value),
            ("metric_without_timestamp_and_labels", 12.47)
        );
        assert_eq!(s[4].value, f64::INFINITY);
        assert_eq!(s[6].labels, labels(&[("le", "+Inf")]));
        assert_eq!(sum(&s, "http_requests_total"), Some(1030.0));
        assert_eq!(
            sum(&s, "http_request_duration_seconds_count"),
            Some(144320.0)
        );
        assert_eq!(sum(&s, "absent"), None);
    }

    #[test]
    fn accepts_the_loose_corners_of_the_format() {
        let text = "a{} 1\r\n  b{x=\"1\",} -Inf\nc\t{ y = \"2\" }\tNaN\t17\n{\"app.latency\",z=\"3\"} 4\nd:e 5e-3\n";
        let s = parse(text).unwrap();
        assert_eq!(
            s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "app.latency", "d:e"]
        );
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert_eq!(s[2].labels, labels(&[("y", "2")]));
        assert!(s[2].value.is_nan());
        assert!(sum(&s, "c").unwrap().is_nan());
        assert_eq!(s[3].labels, labels(&[("z", "3")]));
        assert_eq!(s[4].value, 0.005);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let err = |text: &str| parse(text).unwrap_err();
        let e = err("ok 1\n# c\nbroken{a=\"x\" 1\n");
        assert_eq!(
            (e.line, e.problem),
            (3, "expected ',' or '}' after a label")
        );
        assert!(e.to_string().starts_with("metrics line 3: "), "{e}");
        assert_eq!(err("m").problem, "expected a value after the metric");
        assert_eq!(err("m abc").problem, "the value is not a number");
        assert_eq!(
            err("m 1 1.5").problem,
            "the timestamp is not whole milliseconds"
        );
        assert_eq!(
            err("m 1 2 3").problem,
            "unexpected text after the value and timestamp"
        );
        assert_eq!(err("m{a=\"x} 1").problem, "unterminated quoted string");
        assert_eq!(
            err("m{a=\"\\t\"} 1").problem.split(':').next(),
            Some("invalid escape in a quoted string")
        );
        assert_eq!(err("m{a=x} 1").problem, "expected a quoted label value");
        assert_eq!(err("m{=\"x\"} 1").problem, "expected a label name");
        assert_eq!(err("{a=\"x\"} 1").problem, "expected a metric name");
        assert_eq!(
            err("9m 1").problem,
            "a metric name cannot start with a digit"
        );
        assert_eq!(
            err("m-x 1").problem,
            "expected a blank between the metric and its value"
        );
    }
}
