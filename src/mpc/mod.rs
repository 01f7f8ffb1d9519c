//! The SecureNN three-party protocols, simulated bit for bit: P0 and P1 hold additive
//! shares, P2 helps with correlated randomness and comparisons, and every message
//! goes through a `Transport` that counts it.

pub mod aes;
pub mod chacha;
pub mod cpu;
pub mod keystream;
pub mod matmul;
pub mod net;
pub mod prg;
mod private_compare;
pub mod protocols;
pub mod ring;
pub mod tls;
pub mod transport;
#[cfg(test)]
mod views;

pub use protocols::{Ctx, Shares};
pub use transport::{Party, Tally, Transport};
