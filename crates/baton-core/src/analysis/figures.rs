//! How the judges write figures in a check's one-line detail: rates, latencies, p-values.

/// A share as a percentage: `"30.0 %"`, `"0.52 %"`.
pub(crate) fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p == 0.0 || p >= 1.0 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

/// A latency in microseconds at a readable unit: `"850 µs"`, `"12.3 ms"`, `"1.23 s"`.
pub(crate) fn latency(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// A p-value: fixed notation down to 0.001, scientific below.
pub(crate) fn p_value(p: f64) -> String {
    if p >= 0.001 || p == 0.0 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// An e-value: one decimal below 1000, scientific from there, `inf` when infinite.
pub(crate) fn e_value(e: f64) -> String {
    if !e.is_finite() {
        "inf".to_string()
    } else if e < 1_000.0 {
        format!("{e:.1}")
    } else {
        format!("{e:.1e}")
    }
}

/// A significance level: `"0.001"`, `"1e-6"`, without float noise from `1 - confidence`.
pub(crate) fn level(alpha: f64) -> String {
    if alpha >= 1e-4 {
        number(alpha)
    } else {
        format!("{alpha:.0e}")
    }
}

/// A plain number without float noise: `"120"`, `"0.3"`, `"1.2346"`.
pub(crate) fn number(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(percent(0.3), "30.0 %");
        assert_eq!(percent(0.0052), "0.52 %");
        assert_eq!(percent(0.0), "0.0 %");
        assert_eq!(latency(850.0), "850 µs");
        assert_eq!(latency(12_345.0), "12.3 ms");
        assert_eq!(latency(1_234_567.0), "1.23 s");
        assert_eq!(p_value(0.0342), "0.034");
        assert_eq!(p_value(1.234e-7), "1.2e-7");
        assert_eq!(p_value(0.0), "0.000");
        assert_eq!(e_value(3.25), "3.2");
        assert_eq!(e_value(12_345.0), "1.2e4");
        assert_eq!(e_value(f64::INFINITY), "inf");
        assert_eq!(level(1.0 - 0.999), "0.001");
        assert_eq!(level(1.0 - 0.99), "0.01");
        assert_eq!(level(1e-6), "1e-6");
        assert_eq!(number(120.0), "120");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(number(1.234_567), "1.2346");
        assert_eq!(number(-0.00001), "0");
    }
}
