//! End-to-end tests: the real `baton` binary, real child processes, real sockets, a real
//! SQLite file. They assert what users rely on: zero failed requests during deploys.

mod harness;

mod api_load;
mod artifacts;
mod breakers;
mod canary;
mod containers;
mod crash;
mod dark;
mod dashboard;
mod deploys;
mod environments;
mod escaping;
mod external_lb;
mod failures;
mod flags;
mod fleet;
mod fleet_containers;
mod hosts;
mod input;
mod ledger;
mod migrations;
mod readme;
mod readme_config;
mod reload;
mod restart;
mod tls;
mod tunnel;
mod webhooks;
