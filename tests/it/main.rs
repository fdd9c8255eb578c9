//! otpd's integration tests, one binary (see `DO_NOT_ADD_MORE_TEST_BINARIES`): each module
//! drives the real `otpd`, `otpctl` or `pam_otpd.so` through the kit (`otpd_testkit`). The
//! modules run as threads of one process: no test may change its environment, current
//! folder or signals, and every port is a free one.

mod admin;
mod crash;
mod doors;
mod floods;
mod guides;
mod hardening;
mod hashcost;
mod logging;
mod monitoring;
mod pam;
mod pamtester;
mod pipes;
mod postgres;
mod radclient;
mod radius;
mod readme;
mod screens;
mod secrets;
mod spray;
mod startup;
mod storage;
mod web;
