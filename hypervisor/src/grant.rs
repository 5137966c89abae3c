//! Grant tables v1: one table frame per domain (512 entries) that the guest maps with
//! XENMEM_add_to_physmap, GNTTABOP_query_size, and GNTTABOP_copy with the granter's
//! permission checks. (map/unmap_grant_ref are not implemented yet.)

use crate::arch::phys;
use crate::domain::Domain;
use sluice_abi::grant_table::{
    GntCopyFlags, GntTabOp, GnttabCopy, GnttabCopyPtr, GnttabQuerySize, GrantEntryFlags,
    GrantEntryType, GrantEntryV1, GrantStatus,
};
use sluice_abi::hypercall::XenErrno;
use sluice_abi::types::DOMID_SELF;
use zerocopy::{FromBytes, IntoBytes};

pub const NR_GRANT_FRAMES: u32 = 1;
const ENTRIES: u32 = NR_GRANT_FRAMES * 512;

fn domain(doms: &[Option<Domain>], id: u16) -> Option<&Domain> {
    doms.iter().flatten().find(|d| d.id == id)
}

/// The host address of one side of a copy, checking the grant when it is one.
fn resolve(
    doms: &[Option<Domain>],
    me: u16,
    p: &GnttabCopyPtr,
    by_gref: bool,
    write: bool,
) -> Result<u64, GrantStatus> {
    let dom = if p.domid == DOMID_SELF { me } else { p.domid };
    let owner = domain(doms, dom).ok_or(GrantStatus::BadDomain)?;
    let gfn = if by_gref {
        let r = p.gref();
        if r >= ENTRIES {
            return Err(GrantStatus::BadGntref);
        }
        let mut e = GrantEntryV1::default();
        phys::read(owner.grant_frame + r as u64 * 8, e.as_mut_bytes());
        if e.entry_type() != GrantEntryType::PermitAccess || e.domid != me {
            return Err(GrantStatus::PermissionDenied);
        }
        if write && e.entry_flags().contains(GrantEntryFlags::READONLY) {
            return Err(GrantStatus::PermissionDenied);
        }
        e.frame as u64
    } else {
        // Only the caller's own frames may be named directly.
        if dom != me {
            return Err(GrantStatus::PermissionDenied);
        }
        p.gmfn()
    };
    let gpa = gfn.checked_mul(4096).ok_or(GrantStatus::BadPage)?;
    owner.gpa_to_hpa(gpa).ok_or(GrantStatus::BadPage)
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
    phys::read(src + op.source.offset as u64, b);
    phys::write(dst + op.dest.offset as u64, b);
    Ok(())
}

pub fn grant_table_op(
    doms: &mut [Option<Domain>],
    cur: usize,
    cmd: u64,
    arg: u64,
    count: u64,
) -> Result<i64, XenErrno> {
    let d = doms[cur].as_ref().ok_or(XenErrno::Esrch)?;
    let me = d.id;
    let op = u32::try_from(cmd)
        .ok()
        .and_then(GntTabOp::from_raw)
        .ok_or(XenErrno::Enosys)?;
    match op {
        GntTabOp::QuerySize => {
            let mut q = GnttabQuerySize::default();
            for i in 0..count {
                let at = arg.wrapping_add(i * core::mem::size_of::<GnttabQuerySize>() as u64);
                d.copy_from_guest(at, q.as_mut_bytes())?;
                q.status = if q.dom == DOMID_SELF || q.dom == me {
                    q.nr_frames = NR_GRANT_FRAMES;
                    q.max_nr_frames = NR_GRANT_FRAMES;
                    GrantStatus::Okay as i16
                } else if domain(doms, q.dom).is_none() {
                    GrantStatus::BadDomain as i16
                } else {
                    GrantStatus::PermissionDenied as i16
                };
                d.copy_to_guest(at, q.as_bytes())?;
            }
            Ok(0)
        }
        GntTabOp::Copy => {
            for i in 0..count {
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
            Ok(0)
        }
        _ => Err(XenErrno::Enosys),
    }
}
