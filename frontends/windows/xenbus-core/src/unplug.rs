//! Xen's emulated-device unplug protocol (Xen's docs/misc/hvm-emulated-unplug), on the
//! Xen platform PCI device's I/O ports, so Windows never drives one disk or NIC through
//! both QEMU's emulated device and the PV frontend:
//!
//! 1. read 16 bits at port 0x10: magic 0x49d2, or there is no protocol (do nothing);
//! 2. read 8 bits at 0x12: the protocol version; if it is not 0,
//! 3. write our product number (16 bits) to 0x12 (0xffff "experimental", Xen's
//!    `public/hvm/pvdrivers.h`) and 4. our build number (32 bits) to 0x10,
//! 5. read the magic again: 0xd249 means dom0 blacklisted this build: no PV drivers;
//! 6. write the unplug mask (16 bits) to 0x10: bit 0 all emulated IDE/SCSI disks,
//!    bit 1 all emulated NICs, bit 2 IDE disks but the primary master, bit 3 NVMe.
//!
//! What to unplug is the caller's decision ([`Unplug`]): a disk may be unplugged only when
//! the PV storage driver will take it over at boot (the boot disk vanishes otherwise), a
//! NIC only when the PV network driver is installed. QEMU acts on the mask at once, so it
//! must be written before Windows' emulated-device drivers bind (boot start).

/// Port I/O on the platform device's ports (the driver's hardware layer).
pub trait PortIo {
    /// 8-bit read.
    fn inb(&mut self, port: u16) -> u8;
    /// 16-bit read.
    fn inw(&mut self, port: u16) -> u16;
    /// 16-bit write.
    fn outw(&mut self, port: u16, value: u16);
    /// 32-bit write.
    fn outl(&mut self, port: u16, value: u32);
}

/// The magic of step 1.
pub const MAGIC: u16 = 0x49d2;
/// The magic after step 4 when this build is blacklisted.
pub const MAGIC_BLACKLISTED: u16 = 0xd249;
/// Port of the magic, build number and unplug mask.
pub const PORT_MAGIC: u16 = 0x10;
/// Port of the version and product number.
pub const PORT_PRODUCT: u16 = 0x12;
/// Product number "experimental" (Xen's pvdrivers.h).
pub const PRODUCT_EXPERIMENTAL: u16 = 0xffff;

/// Unplug mask bits.
pub mod mask {
    /// All emulated IDE and SCSI disks (not CD drives).
    pub const ALL_IDE_SCSI_DISKS: u16 = 1 << 0;
    /// All emulated NICs.
    pub const ALL_NICS: u16 = 1 << 1;
    /// IDE disks but the primary master.
    pub const AUX_IDE_DISKS: u16 = 1 << 2;
    /// All emulated NVMe disks.
    pub const NVME_DISKS: u16 = 1 << 3;
}

/// Which emulated devices to take away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unplug {
    /// The PV storage driver is installed and boot-start: unplug emulated disks.
    pub disks: bool,
    /// The PV network driver is installed: unplug emulated NICs.
    pub nics: bool,
}

impl Unplug {
    /// The mask of step 6.
    pub fn mask(self) -> u16 {
        let mut m = 0;
        if self.disks {
            m |= mask::ALL_IDE_SCSI_DISKS | mask::NVME_DISKS;
        }
        if self.nics {
            m |= mask::ALL_NICS;
        }
        m
    }
}

/// How the handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No unplug protocol here (old QEMU, or not Xen's platform device): nothing done;
    /// PV drivers must then leave emulated disks alone.
    Unsupported,
    /// dom0 blacklisted this product and build: do not use PV devices.
    Blacklisted,
    /// Registered (protocol version given) and the mask written.
    Done {
        /// The protocol version the device reported.
        version: u8,
        /// The mask written.
        mask: u16,
    },
}

/// Runs the handshake with `ports` (the platform device's I/O port base added by the
/// caller's `PortIo`), registering `build` under the experimental product number.
pub fn unplug(ports: &mut impl PortIo, build: u32, what: Unplug) -> Outcome {
    if ports.inw(PORT_MAGIC) != MAGIC {
        return Outcome::Unsupported;
    }
    let version = ports.inb(PORT_PRODUCT);
    if version != 0 {
        ports.outw(PORT_PRODUCT, PRODUCT_EXPERIMENTAL);
        ports.outl(PORT_MAGIC, build);
        if ports.inw(PORT_MAGIC) != MAGIC {
            return Outcome::Blacklisted;
        }
    }
    let mask = what.mask();
    ports.outw(PORT_MAGIC, mask);
    Outcome::Done { version, mask }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// QEMU's side of the protocol (hw/i386/xen/xen_platform.c's behaviour as the
    /// protocol document gives it): magic, version, blacklist by build number.
    struct FakeQemu {
        version: u8,
        blacklisted_build: Option<u32>,
        product: Option<u16>,
        build: Option<u32>,
        unplugged: Vec<u16>,
        supported: bool,
    }

    impl FakeQemu {
        fn new(version: u8) -> Self {
            FakeQemu {
                version,
                blacklisted_build: None,
                product: None,
                build: None,
                unplugged: Vec::new(),
                supported: true,
            }
        }
    }

    impl PortIo for FakeQemu {
        fn inb(&mut self, port: u16) -> u8 {
            assert_eq!(port, PORT_PRODUCT);
            self.version
        }
        fn inw(&mut self, port: u16) -> u16 {
            assert_eq!(port, PORT_MAGIC);
            if !self.supported {
                0xffff
            } else if self.build.is_some() && self.build == self.blacklisted_build {
                MAGIC_BLACKLISTED
            } else {
                MAGIC
            }
        }
        fn outw(&mut self, port: u16, value: u16) {
            match port {
                PORT_PRODUCT => self.product = Some(value),
                PORT_MAGIC => {
                    assert!(
                        self.build != self.blacklisted_build || self.build.is_none(),
                        "a blacklisted driver unplugged devices"
                    );
                    self.unplugged.push(value)
                }
                _ => panic!("write to {port:#x}"),
            }
        }
        fn outl(&mut self, port: u16, value: u32) {
            assert_eq!(port, PORT_MAGIC);
            assert!(self.product.is_some(), "build number before product number");
            self.build = Some(value);
        }
    }

    #[test]
    fn registers_then_unplugs_what_it_was_told() {
        let mut q = FakeQemu::new(1);
        let out = unplug(
            &mut q,
            42,
            Unplug {
                disks: true,
                nics: false,
            },
        );
        assert_eq!(
            out,
            Outcome::Done {
                version: 1,
                mask: 0b1001
            }
        );
        assert_eq!(q.product, Some(PRODUCT_EXPERIMENTAL));
        assert_eq!(q.build, Some(42));
        assert_eq!(q.unplugged, [0b1001]);
    }

    #[test]
    fn nothing_installed_unplugs_nothing() {
        let mut q = FakeQemu::new(1);
        assert_eq!(
            unplug(&mut q, 1, Unplug::default()),
            Outcome::Done {
                version: 1,
                mask: 0
            }
        );
        assert_eq!(q.unplugged, [0]);
    }

    #[test]
    fn version_0_skips_registration() {
        let mut q = FakeQemu::new(0);
        let out = unplug(
            &mut q,
            7,
            Unplug {
                disks: false,
                nics: true,
            },
        );
        assert_eq!(
            out,
            Outcome::Done {
                version: 0,
                mask: mask::ALL_NICS
            }
        );
        assert_eq!((q.product, q.build), (None, None));
    }

    #[test]
    fn blacklisted_build_unplugs_nothing() {
        let mut q = FakeQemu::new(1);
        q.blacklisted_build = Some(9);
        assert_eq!(
            unplug(
                &mut q,
                9,
                Unplug {
                    disks: true,
                    nics: true
                }
            ),
            Outcome::Blacklisted
        );
        assert!(q.unplugged.is_empty());
    }

    #[test]
    fn no_protocol_touches_nothing() {
        let mut q = FakeQemu::new(1);
        q.supported = false;
        assert_eq!(
            unplug(
                &mut q,
                1,
                Unplug {
                    disks: true,
                    nics: true
                }
            ),
            Outcome::Unsupported
        );
        assert!(q.unplugged.is_empty() && q.product.is_none());
    }
}
