//! The fake machine's CPUs (as many slots as `arch::smp`).

pub const MAX_CPUS: usize = 8;
