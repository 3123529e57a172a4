//! Which locals an emitted body moves, borrows or hands back: a local read for the last
//! time lends its buffer to the expression reading it (moved), or, when that expression
//! only borrows it, goes back to the runtime's per-thread temporaries
//! (`kernels::recycle`), so that the next call computes in the same storage.

use super::{ident_of, Item, Scope};
use crate::ir::Kind;
use egg::Id;
use proc_macro2::TokenStream;
use quote::quote;

impl Scope<'_> {
    /// Whether `id` is an array local this body owns (not a borrowed seed).
    fn owns(&self, id: Id) -> bool {
        self.locals.contains(&id) && !self.ref_locals.contains(&id) && self.g.kind(id).is_array()
    }

    /// The owned local `id` by value, when this is its last read; `None` otherwise. The
    /// caller uses what it gets: the local counts as moved.
    pub(super) fn take(&self, id: Id) -> Option<TokenStream> {
        if self.owns(id) && self.remaining.borrow().get(&id).copied() == Some(1) {
            self.moved.borrow_mut().insert(id);
            let name = ident_of(self.names, id);
            Some(quote!(#name))
        } else {
            None
        }
    }

    /// Whether `take(id)` would give the local by value (without taking it).
    pub(super) fn takeable(&self, id: Id) -> bool {
        self.owns(id) && self.remaining.borrow().get(&id).copied() == Some(1)
    }

    /// An owned copy of term `id` (moved when this is its last read).
    pub fn owned(&self, id: Id) -> TokenStream {
        if let Some(v) = self.take(id) {
            // Moved: any further read must copy.
            self.remaining.borrow_mut().insert(id, 0);
            return v;
        }
        let acc = self.access(id);
        if self.g.kind(id) == Kind::Scalar {
            acc
        } else {
            quote!((#acc).clone())
        }
    }

    /// How often each term is read by `items` and after them (`returns`).
    pub(super) fn count_reads(&self, items: &[Item], returns: &[Id]) {
        let mut rem = self.remaining.borrow_mut();
        rem.clear();
        self.moved.borrow_mut().clear();
        for item in items {
            let reads = match item {
                Item::Node(id) => self.operands(*id),
                Item::Factor(m) => vec![Item::Node(*m)],
            };
            for op in reads {
                if let Item::Node(c) = op {
                    *rem.entry(c).or_insert(0) += 1;
                }
            }
        }
        for r in returns {
            *rem.entry(*r).or_insert(0) += 1;
        }
    }

    /// The expression computing `id`, its operands' reads counted off, and the locals it
    /// read for the last time without taking them.
    pub(super) fn node_expr(&mut self, id: Id) -> (TokenStream, Vec<Id>) {
        let e = match self.checked_product(id) {
            Some(e) => e,
            None => self.expr(id),
        };
        let dead = self.read_off(&self.operands(id));
        (e, dead)
    }

    /// Counts off one read of each of `reads`: the owned locals that were read for the
    /// last time and not moved.
    pub(super) fn read_off(&self, reads: &[Item]) -> Vec<Id> {
        let mut rem = self.remaining.borrow_mut();
        let mut dead = Vec::new();
        for op in reads {
            if let Item::Node(c) = *op {
                if let Some(k) = rem.get_mut(&c) {
                    if *k == 1 && self.owns(c) && !self.moved.borrow().contains(&c) {
                        dead.push(c);
                    }
                    *k = k.saturating_sub(1);
                }
            }
        }
        dead
    }

    /// `kernels::recycle(t);` for each of `dead`.
    pub(super) fn recycled(&self, dead: &[Id]) -> TokenStream {
        let names = dead.iter().map(|d| ident_of(self.names, *d));
        quote!(#(kernels::recycle(#names);)*)
    }
}
