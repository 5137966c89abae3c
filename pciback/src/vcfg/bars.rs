//! BARs of the virtual config space: the values the guest reads back while it sizes and
//! places them, its writes to them, the checks on a placement (never over guest RAM, a
//! reserved range or another BAR of the function) and the command register, whose
//! memory and I/O decode bits turn placed BARs into mappings to make or remove (events)
//! and only whose guest-owned bits reach the device.
use super::*;

impl VirtualConfig {
    pub(super) fn bar_value(&self, i: u8) -> u32 {
        if let Some(b) = self.bars.iter().find(|b| b.index == i) {
            let flags = match b.kind {
                BarKind::Io => 1,
                BarKind::Mem32 => (b.prefetchable as u32) << 3,
                BarKind::Mem64 => 4 | (b.prefetchable as u32) << 3,
            };
            return self.guest_bar[i as usize] as u32 | flags;
        }
        if i > 0
            && self
                .bars
                .iter()
                .any(|b| b.index == i - 1 && b.kind == BarKind::Mem64)
        {
            return (self.guest_bar[i as usize - 1] >> 32) as u32;
        }
        0
    }

    pub(super) fn set_bar(&mut self, i: u8, v: u32) {
        if let Some(b) = self.bars.iter().find(|b| b.index == i).copied() {
            let mask = match b.kind {
                BarKind::Io => !(b.size as u32 - 1) & 0xffff_fffc,
                _ => !((b.size - 1) as u32) & 0xffff_fff0,
            };
            let g = &mut self.guest_bar[i as usize];
            *g = (*g & !0xffff_ffff) | (v & mask) as u64;
        } else if let Some(b) = self
            .bars
            .iter()
            .find(|b| i > 0 && b.index == i - 1 && b.kind == BarKind::Mem64)
            .copied()
        {
            let hi_mask = !((b.size - 1) >> 32) as u32;
            let g = &mut self.guest_bar[i as usize - 1];
            *g = (*g & 0xffff_ffff) | ((v & hi_mask) as u64) << 32;
        }
    }

    /// Checks a placement of BAR `b` at `g`.
    fn placement(&self, b: &Bar, g: u64) -> Result<(), BarConflict> {
        let end = g.checked_add(b.size).ok_or(BarConflict::OutOfRange)?;
        let hit = |r: &(u64, u64)| g < r.1 && r.0 < end;
        if b.kind == BarKind::Io {
            if end > 0x1_0000 {
                return Err(BarConflict::OutOfRange);
            }
        } else {
            if end > self.max_gpa {
                return Err(BarConflict::OutOfRange);
            }
            if self.guest_ram.iter().any(hit) {
                return Err(BarConflict::OverlapsRam);
            }
            if self.reserved.iter().any(hit) {
                return Err(BarConflict::OverlapsReserved);
            }
        }
        for o in &self.bars {
            let og = self.guest_bar[o.index as usize];
            if o.index != b.index
                && (o.kind == BarKind::Io) == (b.kind == BarKind::Io)
                && og != 0
                && hit(&(og, og.saturating_add(o.size)))
            {
                return Err(BarConflict::OverlapsBar(o.index));
            }
        }
        Ok(())
    }

    pub(super) fn command(
        &mut self,
        dev: &mut impl ConfigSpace,
        mut new: u16,
        ev: &mut Vec<Event>,
    ) {
        for (bit, io) in [(CMD_MEMORY, false), (CMD_IO, true)] {
            let on = new & bit != 0;
            let was = self.cmd & bit != 0;
            let bars: Vec<Bar> = self
                .bars
                .iter()
                .copied()
                .filter(|b| (b.kind == BarKind::Io) == io)
                .collect();
            if on && !was {
                let mut refused = false;
                for b in &bars {
                    let g = self.guest_bar[b.index as usize];
                    if g == 0 {
                        continue;
                    }
                    if let Err(why) = self.placement(b, g) {
                        ev.push(Event::BarRefused {
                            index: b.index,
                            guest: g,
                            why,
                        });
                        refused = true;
                    }
                }
                if refused {
                    new &= !bit;
                    continue;
                }
                for b in &bars {
                    let g = self.guest_bar[b.index as usize];
                    if g != 0 {
                        self.mapped[b.index as usize] = Some(g);
                        ev.push(Event::MapBar {
                            index: b.index,
                            kind: b.kind,
                            guest: g,
                            host: b.addr,
                            size: b.size,
                        });
                    }
                }
            } else if !on && was {
                for b in &bars {
                    if let Some(g) = self.mapped[b.index as usize].take() {
                        ev.push(Event::UnmapBar {
                            index: b.index,
                            guest: g,
                        });
                    }
                }
            }
        }
        self.cmd = new;
        let old = dev.read16(self.bdf, COMMAND);
        let real = (old & !CMD_GUEST) | (new & CMD_GUEST);
        if real != old {
            dev.write16(self.bdf, COMMAND, real);
        }
    }
}
