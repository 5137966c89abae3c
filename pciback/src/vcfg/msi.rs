//! MSI and MSI-X of the virtual config space: the guest's messages are kept here
//! and become events; the MSI-X table and PBA pages are trapped, never mapped.
use super::*;

impl VirtualConfig {
    /// The function's MSI-X capability (where its table and PBA are), if it has one.
    pub fn msix(&self) -> Option<Msix> {
        self.msix
    }

    /// The pages of BARs that are trapped, never mapped: the MSI-X table and PBA.
    pub fn trapped(&self) -> Vec<Trapped> {
        let Some(m) = self.msix else {
            return Vec::new();
        };
        let page = |bar, off: u32, len: u64| Trapped {
            bar,
            start: off as u64 & !(PAGE - 1),
            end: (off as u64 + len).div_ceil(PAGE) * PAGE,
        };
        vec![
            page(m.table_bir, m.table_off, m.table_len()),
            page(m.pba_bir, m.pba_off, m.pba_len()),
        ]
    }

    pub(super) fn msi_write(
        &mut self,
        dev: &mut impl ConfigSpace,
        r: Reg,
        at: u16,
        len: u16,
        v: u32,
        ev: &mut Vec<Event>,
    ) {
        let Some((m, mut s)) = self.msi else { return };
        let was = s.ctl & 1 != 0;
        match r.kind {
            Kind::MsiCtl => {
                let c = Self::merge(r, s.ctl as u32, at, len, v) as u16;
                let max_mme = m.vectors.trailing_zeros() as u16;
                let mme = ((c >> 4) & 7).min(max_mme);
                s.ctl = (c & 1) | mme << 4;
            }
            Kind::MsiAddrLo => {
                s.addr = (s.addr & !0xffff_ffff)
                    | (Self::merge(r, s.addr as u32, at, len, v) & !3) as u64
            }
            Kind::MsiAddrHi => {
                s.addr = (s.addr & 0xffff_ffff)
                    | (Self::merge(r, (s.addr >> 32) as u32, at, len, v) as u64) << 32
            }
            _ => s.data = Self::merge(r, s.data as u32, at, len, v) as u16,
        }
        self.msi = Some((m, s));
        let on = s.ctl & 1 != 0;
        if on {
            ev.push(Event::MsiEnable {
                addr: s.addr,
                data: s.data,
                vectors: 1 << (s.ctl >> 4 & 7),
            });
        } else if was {
            let c = dev.read16(self.bdf, m.off + 2);
            dev.write16(self.bdf, m.off + 2, c & !1);
            ev.push(Event::MsiDisable);
        }
    }

    /// Programs the device's MSI with the remapped message the hypervisor built and
    /// enables it (after [`Event::MsiEnable`]).
    pub fn msi_program(&mut self, dev: &mut impl ConfigSpace, addr: u64, data: u16) {
        let Some((m, s)) = self.msi else { return };
        let o = m.off;
        dev.write32(self.bdf, o + 4, addr as u32);
        let d = if m.is64 {
            dev.write32(self.bdf, o + 8, (addr >> 32) as u32);
            0xc
        } else {
            8
        };
        dev.write16(self.bdf, o + d, data);
        let c = dev.read16(self.bdf, o + 2) & !0x71;
        dev.write16(self.bdf, o + 2, c | (s.ctl & 0x71));
    }

    /// A guest read of the trapped MSI-X table (`off` from the table start).
    pub fn msix_table_read(&self, off: u64, w: Width) -> u32 {
        let idx = (off / 16) as usize;
        if !off.is_multiple_of(w.bytes() as u64) {
            return w.ones();
        }
        let Some(e) = self.msix_table.get(idx) else {
            return w.ones();
        };
        let word = match off % 16 / 4 {
            0 => e.addr as u32,
            1 => (e.addr >> 32) as u32,
            2 => e.data,
            _ => e.ctrl,
        };
        let v = word >> (8 * (off % 4));
        v & w.ones()
    }

    /// A guest 4-byte write to the trapped MSI-X table (8-byte writes arrive as two).
    /// Other widths and out-of-table offsets are dropped.
    pub fn msix_table_write(&mut self, off: u64, w: Width, v: u32) -> Vec<Event> {
        let mut ev = Vec::new();
        let idx = (off / 16) as usize;
        if w != Width::B4 || !off.is_multiple_of(4) || idx >= self.msix_table.len() {
            self.drop_write(off as u16, w.bytes(), &mut ev);
            return ev;
        }
        let e = &mut self.msix_table[idx];
        match off % 16 / 4 {
            0 => e.addr = (e.addr & !0xffff_ffff) | (v & !3) as u64,
            1 => e.addr = (e.addr & 0xffff_ffff) | (v as u64) << 32,
            2 => e.data = v,
            _ => {
                let was_masked = e.ctrl & 1 != 0;
                e.ctrl = v & 1;
                match (was_masked, v & 1 != 0) {
                    (true, false) => ev.push(Event::MsixUnmask {
                        entry: idx as u16,
                        addr: e.addr,
                        data: e.data,
                    }),
                    (false, true) => ev.push(Event::MsixMask { entry: idx as u16 }),
                    _ => {}
                }
            }
        }
        ev
    }
}
