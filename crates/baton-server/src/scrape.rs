//! Scraping the apps' own `/metrics` from each instance.
