//! Parsing the Prometheus text exposition format that apps serve on `/metrics`.
