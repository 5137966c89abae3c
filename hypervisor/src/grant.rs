//! Grant tables v1: one table frame per domain (512 entries) that the guest maps with
//! XENMEM_add_to_physmap, GNTTABOP_query_size, and GNTTABOP_copy with the granter's
//! permission checks, and GNTTABOP_map/unmap_grant_ref into the mapper's physmap
//! (GNTMAP_host_map; read-only grants map read-only in the nested page table).

use crate::arch::phys;
use crate::domain::Domain;
use crate::hypercall::{Progress, OPS_PER_ENTRY};
use crate::mm::FrameAllocator;
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
/// A domain's grant table frames (host addresses; 0: not allocated), and where the
/// guest mapped each (its GPA, and the RAM frame that displaced).
pub struct GrantFrames {
    pub frames: [u64; MAX_GRANT_FRAMES],
    pub at: [Option<(u64, u64)>; MAX_GRANT_FRAMES],
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
            Some(f) => d.grant.frames[i] = f,
            None => {
                for f in d.grant.frames[have..i].iter_mut() {
                    fa.free(*f);
                    *f = 0;
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
fn entry_pa(g: &Domain, gref: u32) -> Option<u64> {
    let frame = (gref / PER_FRAME) as usize;
    if frame >= g.nr_grant_frames as usize {
        return None;
    }
    Some(g.grant.frames[frame] + (gref % PER_FRAME) as u64 * 8)
}

fn domain(doms: &[Option<Domain>], id: u16) -> Option<&Domain> {
    doms.iter().flatten().find(|d| d.id == id)
}

/// The host address of one side of a copy, checking the grant (and holding it in use
/// until the copy is done) when it is one.
fn resolve<'a>(
    doms: &'a [Option<Domain>],
    me: u16,
    p: &GnttabCopyPtr,
    by_gref: bool,
    write: bool,
) -> Result<Side<'a>, GrantStatus> {
    let dom = if p.domid == DOMID_SELF { me } else { p.domid };
    let owner = domain(doms, dom).ok_or(GrantStatus::BadDomain)?;
    let (gfn, taken) = if by_gref {
        acquire(owner, p.gref(), me, write)?
    } else {
        // Only the caller's own frames may be named directly.
        if dom != me {
            return Err(GrantStatus::PermissionDenied);
        }
        (p.gmfn(), 0)
    };
    let hpa = gfn.checked_mul(4096).and_then(|gpa| owner.gpa_to_hpa(gpa));
    match hpa {
        Some(hpa) => Ok(Side {
            hpa,
            granter: owner,
            gref: p.gref(),
            taken,
        }),
        None => {
            release(owner, p.gref(), taken);
            Err(GrantStatus::BadPage)
        }
    }
}

/// One resolved side of a copy: the frame, and the grant flags the copy set (cleared
/// when it is done).
struct Side<'a> {
    hpa: u64,
    granter: &'a Domain,
    gref: u32,
    taken: u16,
}

impl Drop for Side<'_> {
    fn drop(&mut self) {
        release(self.granter, self.gref, self.taken);
    }
}

/// Takes grant `gref` of `g` for `me`: checks its type and grantee, refuses writes to
/// a read-only grant, and sets GTF_reading (and GTF_writing) in the same atomic
/// compare-exchange of (flags, domid), so a granter revoking the entry from another
/// CPU either sees the flags or wins. Returns the frame and the flags newly set.
fn acquire(g: &Domain, gref: u32, me: u16, write: bool) -> Result<(u64, u16), GrantStatus> {
    let pa = entry_pa(g, gref).ok_or(GrantStatus::BadGntref)?;
    let in_use = if write {
        GrantEntryFlags::READING.bits() | GrantEntryFlags::WRITING.bits()
    } else {
        GrantEntryFlags::READING.bits()
    };
    loop {
        let mut e = GrantEntryV1::default();
        phys::read(pa, e.as_mut_bytes());
        if e.entry_type() != GrantEntryType::PermitAccess || e.domid != me {
            return Err(GrantStatus::PermissionDenied);
        }
        if write && e.entry_flags().contains(GrantEntryFlags::READONLY) {
            return Err(GrantStatus::PermissionDenied);
        }
        let word = |flags: u16| flags as u32 | (e.domid as u32) << 16;
        if phys::cmpxchg_u32(pa, word(e.flags), word(e.flags | in_use)).is_ok() {
            // The frame, read again now that the entry is in use (the granter must not
            // change it then).
            phys::read(pa, e.as_mut_bytes());
            return Ok((e.frame as u64, in_use & !e.flags));
        }
    }
}

/// Clears `bits` of grant `gref`'s flags in `g` (atomically: the granter may write
/// the entry at the same time).
fn release(g: &Domain, gref: u32, bits: u16) {
    // The table never shrinks, so an entry taken is still there.
    let Some(pa) = entry_pa(g, gref).filter(|_| bits != 0) else {
        return;
    };
    loop {
        let mut w = [0u8; 4];
        phys::read(pa, &mut w);
        let old = u32::from_le_bytes(w);
        if phys::cmpxchg_u32(pa, old, old & !(bits as u32)).is_ok() {
            return;
        }
    }
}

fn copy_one(doms: &[Option<Domain>], me: u16, op: &GnttabCopy) -> Result<(), GrantStatus> {
    let flags = GntCopyFlags::from_bits_retain(op.flags);
    let len = op.len as u64;
    if op.source.offset as u64 + len > 4096 || op.dest.offset as u64 + len > 4096 {
        return Err(GrantStatus::BadCopyArg);
    }
    let src = resolve(
        doms,
        me,
        &op.source,
        flags.contains(GntCopyFlags::SOURCE_GREF),
        false,
    )?;
    let dst = resolve(
        doms,
        me,
        &op.dest,
        flags.contains(GntCopyFlags::DEST_GREF),
        true,
    )?;
    let mut buf = [0u8; 4096];
    let b = &mut buf[..len as usize];
    phys::read(src.hpa + op.source.offset as u64, b);
    phys::write(dst.hpa + op.dest.offset as u64, b);
    Ok(())
}

/// Grant mappings a domain may hold at once.
pub const MAX_MAPS: usize = 16;

/// One active GNTTABOP_map_grant_ref in the mapper.
#[derive(Clone, Copy, Debug)]
pub struct GrantMap {
    pub granter: u16,
    pub gref: u32,
    pub gpa: u64,
    /// The mapper's RAM frame the mapping displaced (put back on unmap).
    pub displaced: u64,
}

fn map_one(
    doms: &mut [Option<Domain>],
    cur: usize,
    op: &GnttabMapGrantRef,
) -> Result<u32, GrantStatus> {
    let me = doms[cur].as_ref().ok_or(GrantStatus::GeneralError)?.id;
    let flags = GntMapFlags::from_bits_retain(op.flags);
    if !flags.contains(GntMapFlags::HOST_MAP) {
        return Err(GrantStatus::GeneralError);
    }
    let readonly = flags.contains(GntMapFlags::READONLY);
    let g = domain(doms, op.dom)
        .filter(|g| g.id != me)
        .ok_or(GrantStatus::BadDomain)?;
    let (frame, taken) = acquire(g, op.gref, me, !readonly)?;
    let Some(hpa) = frame.checked_mul(4096).and_then(|gpa| g.gpa_to_hpa(gpa)) else {
        release(g, op.gref, taken);
        return Err(GrantStatus::BadPage);
    };
    let g_id = g.id;
    let mapped = map_into(doms, cur, op, hpa, readonly);
    if mapped.is_err() {
        if let Some(g) = domain(doms, g_id) {
            release(g, op.gref, taken);
        }
    }
    mapped
}

/// The mapper's side of [`map_one`]: granted frame `hpa` replaces its RAM at
/// `op.host_addr`.
fn map_into(
    doms: &mut [Option<Domain>],
    cur: usize,
    op: &GnttabMapGrantRef,
    hpa: u64,
    readonly: bool,
) -> Result<u32, GrantStatus> {
    let d = doms[cur].as_mut().ok_or(GrantStatus::GeneralError)?;
    let gpa = op.host_addr;
    let cur_frame = d
        .gpa_to_hpa(gpa)
        .filter(|_| gpa.is_multiple_of(4096))
        .ok_or(GrantStatus::BadVirtAddr)?;
    if d.is_xen_frame(cur_frame) || d.grant_maps.iter().flatten().any(|m| m.gpa == gpa) {
        return Err(GrantStatus::BadVirtAddr);
    }
    let slot = d
        .grant_maps
        .iter()
        .position(|m| m.is_none())
        .ok_or(GrantStatus::NoSpace)?;
    let displaced = d
        .remap_flags(gpa, hpa, !readonly)
        .ok_or(GrantStatus::BadVirtAddr)?;
    d.grant_maps[slot] = Some(GrantMap {
        granter: op.dom,
        gref: op.gref,
        gpa,
        displaced,
    });
    Ok(slot as u32)
}

/// Removes mapping `handle` of the domain at `cur`, putting its RAM frame back.
fn unmap_handle(doms: &mut [Option<Domain>], cur: usize, handle: usize) -> Option<()> {
    let d = doms[cur].as_mut()?;
    let m = d.grant_maps.get_mut(handle)?.take()?;
    d.remap_flags(m.gpa, m.displaced, true)?;
    if let Some(g) = doms.iter().flatten().find(|x| x.id == m.granter) {
        let busy = GrantEntryFlags::READING.bits() | GrantEntryFlags::WRITING.bits();
        release(g, m.gref, busy);
    }
    Some(())
}

/// Before the domain at `cur` is destroyed: its own mappings are undone, and every
/// other domain's mapping of its memory is revoked (their RAM frame put back).
pub fn release_all(doms: &mut [Option<Domain>], cur: usize) {
    for h in 0..MAX_MAPS {
        unmap_handle(doms, cur, h);
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
                .is_some_and(|m| m.granter == id);
            if hit {
                unmap_handle(doms, i, h);
            }
        }
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
        let gfn = d.grant.at[i].map_or(!0u64, |(gpa, _)| gpa >> 12);
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
                let mut raw = [0u8; core::mem::size_of::<GnttabCopy>()];
                d.copy_from_guest(at, &mut raw)?;
                let mut op = GnttabCopy::read_from_bytes(&raw).map_err(|_| XenErrno::Efault)?;
                op.status = match copy_one(doms, me, &op) {
                    Ok(()) => GrantStatus::Okay as i16,
                    Err(s) => s as i16,
                };
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
                match map_one(doms, cur, &op) {
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
                    .is_some_and(|m| m.gpa == op.host_addr);
                op.status = if !matches {
                    GrantStatus::BadHandle as i16
                } else if unmap_handle(doms, cur, h).is_some() {
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
