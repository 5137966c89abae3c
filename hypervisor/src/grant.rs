//! Grant tables v1: up to 32 table frames per domain (512 entries each) that the guest
//! maps with XENMEM_add_to_physmap, GNTTABOP_setup_table / query_size, GNTTABOP_copy with
//! the granter's permission checks, and GNTTABOP_map/unmap_grant_ref into the mapper's
//! physmap (GNTMAP_host_map; read-only grants map read-only in the nested page table).
//! Grants in use are Xen's active entries with pin counts (GTF_reading / GTF_writing
//! follow them), and a grant names only its granter's own RAM (the frame table's owner).

use crate::addr::{Gfn, Gpa, Hpa};
use crate::arch::phys;
use crate::domain::{Access, Domain};
use crate::hypercall::{Progress, OPS_PER_ENTRY};
use crate::mm::{FrameAllocator, Owner};
use sluice_abi::grant_table::{
    GntCopyFlags, GntMapFlags, GntTabOp, GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef,
    GnttabQuerySize, GnttabSetupTable, GnttabUnmapGrantRef, GrantEntryFlags, GrantEntryType,
    GrantEntryV1, GrantStatus,
};
use sluice_abi::hypercall::XenErrno;
use sluice_abi::types::DOMID_SELF;
use zerocopy::{FromBytes, IntoBytes};

/// Grant table frames a domain may have (its `max_grant_frames`): 32 frames, 16384 v1
/// entries. Xen 4.17's default is 64 (`opt_max_grant_frames`, the `gnttab_max_frames`
/// option; the toolstack sets it per domain); 32 was the default of older Xen and is
/// plenty for a few PV devices. Frame 0 exists from creation (Xen grows a new table to one frame
/// too); more are allocated, zeroed, when the domain asks for them (GNTTABOP_setup_table,
/// add_to_physmap(XENMAPSPACE_grant_table, idx)) and freed with the domain.
pub const MAX_GRANT_FRAMES: usize = 32;
/// A domain's grant table frames (host addresses; `Hpa(0)`: not allocated), and where the
/// guest mapped each (its GPA, and the RAM frame that displaced).
pub struct GrantFrames {
    pub frames: [Hpa; MAX_GRANT_FRAMES],
    pub at: [Option<(Gpa, Hpa)>; MAX_GRANT_FRAMES],
    /// Its active entries (grants in use by others).
    pub active: alloc::vec::Vec<Active>,
}

/// v1 entries in one grant table frame.
const PER_FRAME: u32 = 4096 / 8;

/// Grows `d`'s table to `nr` frames (nothing when it has that many). False when `nr`
/// is above the maximum or the frames run out (then the table is left as it was).
pub fn grow(d: &mut Domain, fa: &mut FrameAllocator, nr: u32) -> bool {
    if nr as usize > MAX_GRANT_FRAMES {
        return false;
    }
    let have = d.nr_grant_frames as usize;
    for i in have..nr as usize {
        match fa.alloc() {
            Some(f) => d.grant.frames[i] = Hpa(f),
            None => {
                for f in d.grant.frames[have..i].iter_mut() {
                    fa.free(f.0);
                    *f = Hpa(0);
                }
                return false;
            }
        }
    }
    d.nr_grant_frames = d.nr_grant_frames.max(nr);
    true
}

/// The host address of v1 entry `gref` of `g`'s table, if the table has it
/// (Xen: `ref >= nr_grant_entries` is GNTST_bad_gntref).
fn entry_pa(g: &Domain, gref: u32) -> Option<Hpa> {
    let frame = (gref / PER_FRAME) as usize;
    if frame >= g.nr_grant_frames as usize {
        return None;
    }
    Some(Hpa(g.grant.frames[frame].0 + (gref % PER_FRAME) as u64 * 8))
}

fn domain(doms: &[Option<Domain>], id: u16) -> Option<&Domain> {
    doms.iter().flatten().find(|d| d.id == id)
}

fn index(doms: &[Option<Domain>], id: u16) -> Option<usize> {
    doms.iter()
        .position(|d| d.as_ref().is_some_and(|d| d.id == id))
}

/// Xen's active grant entry: a grant in use, the frame it named when first pinned and
/// its pins (mappings, and copies while they run). GTF_reading is set while any pin is
/// held, GTF_writing while a writable one is; both follow the pins, never a guess.
#[derive(Clone, Copy, Debug)]
pub struct Active {
    pub gref: u32,
    pub grantee: u16,
    pub frame: Hpa,
    pub pin_ro: u32,
    pub pin_rw: u32,
}

/// Active entries a domain's table may have at once (each is a pin by a mapping, at
/// most [`MAX_MAPS`] per mapper, or a copy in progress).
pub const MAX_ACTIVE: usize = 256;
/// Tries to update an entry the granter keeps changing under us before giving up (Xen:
/// "Shared grant entry is unstable", GNTST_general_error).
pub const SET_STATUS_RETRIES: u32 = 4;

const GTF_READING: u16 = GrantEntryFlags::READING.bits();
const GTF_WRITING: u16 = GrantEntryFlags::WRITING.bits();

/// Checks entry `pa` (its type, grantee `me`, and read-only when `write`) and sets
/// GTF_reading (and GTF_writing) with one compare-exchange of (flags, domid), so a
/// granter revoking it from another CPU either sees the flags or wins (Xen's
/// `_set_status_v1`). Returns the frame number the entry names, read once, after.
fn set_status(pa: Hpa, me: u16, write: bool) -> Result<Gfn, GrantStatus> {
    let pa = pa.0;
    let bits = if write {
        GTF_READING | GTF_WRITING
    } else {
        GTF_READING
    };
    for _ in 0..SET_STATUS_RETRIES {
        let mut e = GrantEntryV1::default();
        phys::read(pa, e.as_mut_bytes());
        if e.entry_type() != GrantEntryType::PermitAccess || e.domid != me {
            return Err(GrantStatus::PermissionDenied);
        }
        if write && e.entry_flags().contains(GrantEntryFlags::READONLY) {
            return Err(GrantStatus::PermissionDenied);
        }
        let word = |flags: u16| flags as u32 | (e.domid as u32) << 16;
        if phys::cmpxchg_u32(pa, word(e.flags), word(e.flags | bits)).is_ok() {
            phys::read(pa, e.as_mut_bytes());
            return Ok(Gfn(e.frame as u64));
        }
    }
    Err(GrantStatus::GeneralError)
}

/// Clears `bits` of the entry's flags (a LOCK AND: the granter may write it meanwhile).
fn clear_flags(pa: Hpa, bits: u16) {
    if bits != 0 {
        phys::fetch_and_u64(pa.0, !(bits as u64));
    }
}

/// Pins grant `gref` of the domain at `gi` for `me` (writable when `write`): the first
/// pin checks the entry, sets its flags and records the frame, which must be the
/// granter's own RAM (not a frame mapped from someone else, not the hypervisor's);
/// later pins use the recorded frame. Nothing stays set when it fails.
fn pin(
    doms: &mut [Option<Domain>],
    gi: usize,
    fa: &FrameAllocator,
    gref: u32,
    me: u16,
    write: bool,
) -> Result<Hpa, GrantStatus> {
    let g = doms[gi].as_mut().ok_or(GrantStatus::BadDomain)?;
    let pa = entry_pa(g, gref).ok_or(GrantStatus::BadGntref)?;
    if let Some(a) = g.grant.active.iter_mut().find(|a| a.gref == gref) {
        if a.grantee != me {
            return Err(GrantStatus::PermissionDenied);
        }
        if write && a.pin_rw == 0 {
            // A writable pin of an entry pinned read-only so far: the entry must allow
            // it now (GTF_reading is already set; the frame stays the recorded one).
            set_status(pa, me, true)?;
        }
        if write {
            a.pin_rw += 1;
        } else {
            a.pin_ro += 1;
        }
        return Ok(a.frame);
    }
    if g.grant.active.len() >= MAX_ACTIVE {
        return Err(GrantStatus::GeneralError);
    }
    let gfn = set_status(pa, me, write)?;
    let undo = if write {
        GTF_READING | GTF_WRITING
    } else {
        GTF_READING
    };
    let access = if write { Access::Write } else { Access::Read };
    let frame = gfn
        .gpa()
        .and_then(|gpa| g.translate(gpa, access))
        .filter(|&hpa| fa.owner(hpa) == Owner::Domain(g.id));
    let Some(frame) = frame else {
        clear_flags(pa, undo);
        return Err(GrantStatus::BadPage);
    };
    g.grant.active.push(Active {
        gref,
        grantee: me,
        frame: frame.page(),
        pin_ro: (!write) as u32,
        pin_rw: write as u32,
    });
    Ok(frame.page())
}

/// Drops a pin taken by [`pin`]: GTF_writing clears with the last writable pin,
/// GTF_reading (and the active entry) with the last pin.
fn unpin(g: &mut Domain, gref: u32, write: bool) {
    let Some(i) = g.grant.active.iter().position(|a| a.gref == gref) else {
        return;
    };
    let a = &mut g.grant.active[i];
    if write {
        a.pin_rw = a.pin_rw.saturating_sub(1);
    } else {
        a.pin_ro = a.pin_ro.saturating_sub(1);
    }
    let mut clear = 0;
    if a.pin_rw == 0 {
        clear |= GTF_WRITING;
    }
    if a.pin_rw == 0 && a.pin_ro == 0 {
        clear |= GTF_READING;
        g.grant.active.swap_remove(i);
    }
    if let Some(pa) = entry_pa(g, gref) {
        clear_flags(pa, clear);
    }
}

/// One resolved side of a copy: the host address of its page, and the pin taken on a
/// grant (granter's index, gref, writable) to drop when the copy is done.
struct Side {
    hpa: Hpa,
    pinned: Option<(usize, u32, bool)>,
}

impl Side {
    fn release(self, doms: &mut [Option<Domain>]) {
        if let Some((gi, gref, write)) = self.pinned {
            if let Some(g) = doms[gi].as_mut() {
                unpin(g, gref, write);
            }
        }
    }
}

/// One side of a copy: a grant (pinned until the copy is done) or the caller's own
/// frame by GFN, which must be its own RAM (not a grant mapping, not the hypervisor's)
/// and, for the destination, writable in its NPT.
fn side(
    doms: &mut [Option<Domain>],
    me: u16,
    fa: &FrameAllocator,
    p: &GnttabCopyPtr,
    by_gref: bool,
    write: bool,
) -> Result<Side, GrantStatus> {
    let dom = if p.domid == DOMID_SELF { me } else { p.domid };
    let gi = index(doms, dom).ok_or(GrantStatus::BadDomain)?;
    if by_gref {
        let hpa = pin(doms, gi, fa, p.gref(), me, write)?;
        return Ok(Side {
            hpa,
            pinned: Some((gi, p.gref(), write)),
        });
    }
    // Only the caller's own frames may be named directly.
    if dom != me {
        return Err(GrantStatus::PermissionDenied);
    }
    let d = doms[gi].as_ref().ok_or(GrantStatus::BadDomain)?;
    let access = if write { Access::Write } else { Access::Read };
    let hpa = Gfn(p.gmfn())
        .gpa()
        .and_then(|gpa| d.translate(gpa, access))
        .filter(|&hpa| fa.owner(hpa) == Owner::Domain(me))
        .ok_or(GrantStatus::BadPage)?;
    Ok(Side { hpa, pinned: None })
}

fn copy_one(
    doms: &mut [Option<Domain>],
    me: u16,
    fa: &FrameAllocator,
    op: &GnttabCopy,
) -> Result<(), GrantStatus> {
    let flags = GntCopyFlags::from_bits_retain(op.flags);
    let len = op.len as u64;
    if op.source.offset as u64 + len > 4096 || op.dest.offset as u64 + len > 4096 {
        return Err(GrantStatus::BadCopyArg);
    }
    let src_gref = flags.contains(GntCopyFlags::SOURCE_GREF);
    let src = side(doms, me, fa, &op.source, src_gref, false)?;
    let dest_gref = flags.contains(GntCopyFlags::DEST_GREF);
    let dst = match side(doms, me, fa, &op.dest, dest_gref, true) {
        Ok(d) => d,
        Err(e) => {
            src.release(doms);
            return Err(e);
        }
    };
    let mut buf = [0u8; 4096];
    let b = &mut buf[..len as usize];
    phys::read(src.hpa.0 + op.source.offset as u64, b);
    phys::write(dst.hpa.0 + op.dest.offset as u64, b);
    src.release(doms);
    dst.release(doms);
    Ok(())
}

/// Grant mappings a domain may hold at once.
pub const MAX_MAPS: usize = 16;

/// One active GNTTABOP_map_grant_ref in the mapper.
#[derive(Clone, Copy, Debug)]
pub struct GrantMap {
    pub granter: u16,
    pub gref: u32,
    pub gpa: Gpa,
    /// The granter's frame mapped (counted in the frame table while mapped).
    pub frame: Hpa,
    pub readonly: bool,
    /// The mapper's RAM frame the mapping displaced (put back on unmap).
    pub displaced: Hpa,
}

fn map_one(
    doms: &mut [Option<Domain>],
    cur: usize,
    fa: &mut FrameAllocator,
    op: &GnttabMapGrantRef,
) -> Result<u32, GrantStatus> {
    let me = doms[cur].as_ref().ok_or(GrantStatus::GeneralError)?.id;
    let flags = GntMapFlags::from_bits_retain(op.flags);
    if !flags.contains(GntMapFlags::HOST_MAP) {
        return Err(GrantStatus::GeneralError);
    }
    let readonly = flags.contains(GntMapFlags::READONLY);
    let gi = index(doms, op.dom)
        .filter(|&gi| gi != cur)
        .ok_or(GrantStatus::BadDomain)?;
    let hpa = pin(doms, gi, fa, op.gref, me, !readonly)?;
    let mapped = map_into(doms, cur, fa, op, hpa, readonly);
    if mapped.is_err() {
        if let Some(g) = doms[gi].as_mut() {
            unpin(g, op.gref, !readonly);
        }
    }
    mapped
}

/// The mapper's side of [`map_one`]: granted frame `hpa` replaces its own RAM at
/// `op.host_addr`.
fn map_into(
    doms: &mut [Option<Domain>],
    cur: usize,
    fa: &mut FrameAllocator,
    op: &GnttabMapGrantRef,
    hpa: Hpa,
    readonly: bool,
) -> Result<u32, GrantStatus> {
    let d = doms[cur].as_mut().ok_or(GrantStatus::GeneralError)?;
    let gpa = Gpa(op.host_addr);
    let cur_frame = d
        .translate(gpa, Access::Read)
        .filter(|_| gpa.is_page_aligned())
        .ok_or(GrantStatus::BadVirtAddr)?;
    if fa.owner(cur_frame) != Owner::Domain(d.id)
        || d.grant_maps.iter().flatten().any(|m| m.gpa == gpa)
    {
        return Err(GrantStatus::BadVirtAddr);
    }
    let slot = d
        .grant_maps
        .iter()
        .position(|m| m.is_none())
        .ok_or(GrantStatus::NoSpace)?;
    if !fa.get_map(hpa) {
        return Err(GrantStatus::GeneralError);
    }
    let Some(displaced) = d.remap_flags(fa, gpa, hpa, !readonly) else {
        fa.put_map(hpa);
        return Err(GrantStatus::BadVirtAddr);
    };
    d.grant_maps[slot] = Some(GrantMap {
        granter: op.dom,
        gref: op.gref,
        gpa,
        frame: hpa,
        readonly,
        displaced,
    });
    Ok(slot as u32)
}

/// Removes mapping `handle` of the domain at `cur`, putting its RAM frame back and
/// dropping the pin and the frame's mapping count.
fn unmap_handle(
    doms: &mut [Option<Domain>],
    cur: usize,
    fa: &mut FrameAllocator,
    handle: usize,
) -> Option<()> {
    let d = doms[cur].as_mut()?;
    let m = d.grant_maps.get_mut(handle)?.take()?;
    d.remap_flags(fa, m.gpa, m.displaced, true)?;
    fa.put_map(m.frame);
    if let Some(g) = doms.iter_mut().flatten().find(|x| x.id == m.granter) {
        unpin(g, m.gref, !m.readonly);
    }
    Some(())
}

/// Before the domain at `cur` is destroyed: its own mappings are undone (dropping its
/// pins, so the granters' flags clear), and every other domain's mapping of a frame it
/// owns is revoked (their RAM frame put back), so none of its frames stays mapped when
/// they go back to the allocator.
pub fn release_all(doms: &mut [Option<Domain>], cur: usize, fa: &mut FrameAllocator) {
    for h in 0..MAX_MAPS {
        unmap_handle(doms, cur, fa, h);
    }
    let Some(id) = doms[cur].as_ref().map(|d| d.id) else {
        return;
    };
    for i in 0..doms.len() {
        if i == cur {
            continue;
        }
        for h in 0..MAX_MAPS {
            let hit = doms[i]
                .as_ref()
                .and_then(|d| d.grant_maps[h])
                .is_some_and(|m| m.granter == id || fa.owner(m.frame) == Owner::Domain(id));
            if hit {
                unmap_handle(doms, i, fa, h);
            }
        }
    }
    if let Some(d) = doms[cur].as_mut() {
        d.grant.active.clear();
    }
}

/// Writes the frame numbers of `d`'s first `op.nr_frames` grant frames to
/// `op.frame_list`. The guest is auto-translated (PVH/HVM), so, like Xen's
/// `gnttab_shared_gfn` (`mfn_to_gfn`: the M2P entry for a translated domain), each is
/// the GFN where the guest mapped that frame with add_to_physmap, or
/// INVALID_M2P_ENTRY (all ones) if it has not; a write that faults makes the status
/// GNTST_bad_virt_addr (the others are still written, as Xen's loop does).
fn setup_frame_list(d: &Domain, op: &GnttabSetupTable) -> GrantStatus {
    let mut status = GrantStatus::Okay;
    for i in 0..op.nr_frames as usize {
        let gfn = d.grant.at[i].map_or(!0u64, |(gpa, _)| gpa.0 >> 12);
        let at = op.frame_list.wrapping_add(8 * i as u64);
        if d.copy_to_guest(at, &gfn.to_le_bytes()).is_err() {
            status = GrantStatus::BadVirtAddr;
        }
    }
    status
}

pub fn grant_table_op(
    doms: &mut [Option<Domain>],
    cur: usize,
    fa: &mut FrameAllocator,
    cmd: u64,
    arg: u64,
    count: u64,
) -> Result<Progress, XenErrno> {
    let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
    let me = d.id;
    // Xen's `unsigned int count`, and `(int)count < 0` is EINVAL.
    let count = count as u32 as u64;
    if count > i32::MAX as u64 {
        return Err(XenErrno::Einval);
    }
    // A preemption point every OPS_PER_ENTRY ops: the continuation re-enters with the
    // handle advanced past the ops done and the count reduced by them (Xen's
    // do_grant_table_op: guest_handle_add_offset, then "ihi", cmd, uop, count - done).
    let preempt = |i: u64, size: usize| {
        (i > 0 && i.is_multiple_of(OPS_PER_ENTRY))
            .then(|| Progress::Preempted([cmd, arg.wrapping_add(i * size as u64), count - i]))
    };
    let op = u32::try_from(cmd)
        .ok()
        .and_then(GntTabOp::from_raw)
        .ok_or(XenErrno::Enosys)?;
    match op {
        // Like Xen's gnttab_query_size and gnttab_setup_table: exactly one op (count
        // != 1 is EINVAL), a foreign domain that exists is GNTST_permission_denied (no
        // domain here is privileged over another), one that does not GNTST_bad_domain.
        GntTabOp::QuerySize => {
            if count != 1 {
                return Err(XenErrno::Einval);
            }
            let mut q = GnttabQuerySize::default();
            d.copy_from_guest(arg, q.as_mut_bytes())?;
            q.status = if q.dom == DOMID_SELF || q.dom == me {
                q.nr_frames = d.nr_grant_frames;
                q.max_nr_frames = MAX_GRANT_FRAMES as u32;
                GrantStatus::Okay as i16
            } else if domain(doms, q.dom).is_none() {
                GrantStatus::BadDomain as i16
            } else {
                GrantStatus::PermissionDenied as i16
            };
            d.copy_to_guest(arg, q.as_bytes())?;
            Ok(Progress::Done(0))
        }
        GntTabOp::SetupTable => {
            if count != 1 {
                return Err(XenErrno::Einval);
            }
            let mut op = GnttabSetupTable::default();
            d.copy_from_guest(arg, op.as_mut_bytes())?;
            let exists = domain(doms, op.dom).is_some();
            let d = doms[cur].as_mut().ok_or(XenErrno::Esrch)?;
            let status = if op.dom != DOMID_SELF && op.dom != me {
                if !exists {
                    GrantStatus::BadDomain
                } else {
                    GrantStatus::PermissionDenied
                }
            } else if op.nr_frames as usize > MAX_GRANT_FRAMES || !grow(d, fa, op.nr_frames) {
                GrantStatus::GeneralError
            } else {
                setup_frame_list(d, &op)
            };
            let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
            // Only the status field is written back (Xen's __copy_field_to_guest).
            let at = arg.wrapping_add(core::mem::offset_of!(GnttabSetupTable, status) as u64);
            d.copy_to_guest(at, &(status as i16).to_le_bytes())?;
            Ok(Progress::Done(0))
        }
        GntTabOp::Copy => {
            for i in 0..count {
                if let Some(p) = preempt(i, core::mem::size_of::<GnttabCopy>()) {
                    return Ok(p);
                }
                let at = arg.wrapping_add(i * core::mem::size_of::<GnttabCopy>() as u64);
                let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
                let mut raw = [0u8; core::mem::size_of::<GnttabCopy>()];
                d.copy_from_guest(at, &mut raw)?;
                let mut op = GnttabCopy::read_from_bytes(&raw).map_err(|_| XenErrno::Efault)?;
                op.status = match copy_one(doms, me, fa, &op) {
                    Ok(()) => GrantStatus::Okay as i16,
                    Err(s) => s as i16,
                };
                let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
                d.copy_to_guest(at, op.as_bytes())?;
            }
            Ok(Progress::Done(0))
        }
        GntTabOp::MapGrantRef => {
            const SZ: usize = core::mem::size_of::<GnttabMapGrantRef>();
            for i in 0..count {
                if let Some(p) = preempt(i, SZ) {
                    return Ok(p);
                }
                let at = arg.wrapping_add(i * SZ as u64);
                let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
                let mut raw = [0u8; SZ];
                d.copy_from_guest(at, &mut raw)?;
                let mut op =
                    GnttabMapGrantRef::read_from_bytes(&raw).map_err(|_| XenErrno::Efault)?;
                match map_one(doms, cur, fa, &op) {
                    Ok(h) => {
                        op.status = GrantStatus::Okay as i16;
                        op.handle = h;
                        op.dev_bus_addr = 0;
                    }
                    Err(s) => op.status = s as i16,
                }
                let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
                d.copy_to_guest(at, op.as_bytes())?;
            }
            Ok(Progress::Done(0))
        }
        GntTabOp::UnmapGrantRef => {
            const SZ: usize = core::mem::size_of::<GnttabUnmapGrantRef>();
            for i in 0..count {
                if let Some(p) = preempt(i, SZ) {
                    return Ok(p);
                }
                let at = arg.wrapping_add(i * SZ as u64);
                let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
                let mut raw = [0u8; SZ];
                d.copy_from_guest(at, &mut raw)?;
                let mut op =
                    GnttabUnmapGrantRef::read_from_bytes(&raw).map_err(|_| XenErrno::Efault)?;
                let h = op.handle as usize;
                let matches = d
                    .grant_maps
                    .get(h)
                    .copied()
                    .flatten()
                    .is_some_and(|m| m.gpa == Gpa(op.host_addr));
                op.status = if !matches {
                    GrantStatus::BadHandle as i16
                } else if unmap_handle(doms, cur, fa, h).is_some() {
                    GrantStatus::Okay as i16
                } else {
                    GrantStatus::GeneralError as i16
                };
                let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
                d.copy_to_guest(at, op.as_bytes())?;
            }
            Ok(Progress::Done(0))
        }
        _ => Err(XenErrno::Enosys),
    }
}
