//! Packaging of Sluice's Windows drivers on Linux, and the checks of what it makes:
//! [`cat`] writes catalogs, [`pe`] checks driver images and hashes them the
//! Authenticode way, [`inf`] validates INF files.

pub mod cat;
pub mod inf;
mod inf_net;
pub mod pe;
