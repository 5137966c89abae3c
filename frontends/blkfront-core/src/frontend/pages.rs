//! The per-ring page pool: bounce and indirect pages taken for a request, given back
//! on completion (kept granted with persistent grants), quarantined when the backend
//! still maps them.

use super::{Frontend, PoolOf, PoolPage, PoolVec};
use crate::platform::{Platform, SeamError};

impl<P: Platform, T> Frontend<P, T> {
    pub(super) fn drop_pool(&mut self, p: &mut P, pool: PoolVec<P>) {
        for pp in pool {
            match pp.gref {
                Some(g) if p.end_access(g).is_err() => {
                    self.stats.quarantined_pages += 1;
                    p.leak(pp.page);
                }
                _ => drop(pp.page),
            }
        }
    }

    pub(super) fn take_page(
        &mut self,
        p: &mut P,
        qi: usize,
        readonly: bool,
    ) -> Result<PoolOf<P>, SeamError> {
        let mut pp = match self.queues[qi].pool.pop() {
            Some(pp) => pp,
            None => PoolPage {
                page: p.alloc_pages(1)?,
                gref: None,
            },
        };
        if pp.gref.is_none() {
            // Persistent grants are writable: the page serves reads and writes in turn.
            let ro = readonly && !self.persistent;
            match p.grant_access(self.backend_id, &pp.page, 0, ro) {
                Ok(g) => pp.gref = Some(g),
                Err(e) => {
                    self.queues[qi].pool.push(pp);
                    return Err(e);
                }
            }
        }
        Ok(pp)
    }

    /// A request's pages go back to ring `qi`: out of its pages in flight, into its pool.
    pub(super) fn give_back(
        &mut self,
        p: &mut P,
        qi: usize,
        bounce: PoolVec<P>,
        indirect: PoolVec<P>,
    ) {
        let q = &mut self.queues[qi];
        q.pages = q.pages.saturating_sub(bounce.len() + indirect.len());
        self.release_pages(p, qi, bounce);
        self.release_pages(p, qi, indirect);
    }

    pub(super) fn release_pages(&mut self, p: &mut P, qi: usize, pages: PoolVec<P>) {
        for mut pp in pages {
            if !self.persistent {
                if let Some(g) = pp.gref.take() {
                    if p.end_access(g).is_err() {
                        // The backend still maps it: never reuse or free this page.
                        self.stats.quarantined_pages += 1;
                        p.leak(pp.page);
                        continue;
                    }
                }
            }
            self.queues[qi].pool.push(pp);
        }
    }
}
