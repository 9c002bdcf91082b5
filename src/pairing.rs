//! Pairing: how a browser with the gateway token reaches "Connected" without a shell.
//!
//! TODO(pairing): issue 6.
