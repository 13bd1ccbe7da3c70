//! The operator's live heap as the allocator counts it, opt-in (`PANOPTES_HEAP_COUNT=1`):
//! the bytes the program holds, apart from the RSS the allocator keeps around them. Their
//! difference is what an allocator retains after a burst (freed pages not returned, pages
//! kept by a few long-lived objects), which `make heap` (live bytes per structure) cannot
//! see. Off, the count costs one predictable branch per allocation; on, one atomic add.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// `A`, counting the bytes live once [`enable`]d.
pub struct Counting<A>(pub A);

// SAFETY: every call is passed on to `A` unchanged; only counters are updated around it.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc(layout) };
        count(!p.is_null(), layout.size() as isize);
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc_zeroed(layout) };
        count(!p.is_null(), layout.size() as isize);
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(true, -(layout.size() as isize));
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        count(!p.is_null(), new_size as isize - layout.size() as isize);
        p
    }
}

#[inline]
fn count(done: bool, delta: isize) {
    if done && ON.load(Relaxed) {
        LIVE.fetch_add(delta, Relaxed);
    }
}

/// Starts counting; call first thing in `main` (blocks allocated before are freed uncounted,
/// a few hundred bytes of runtime set-up).
pub fn enable() {
    ON.store(true, Relaxed);
}

/// Bytes live on the heap, if counting.
pub fn live_bytes() -> Option<u64> {
    ON.load(Relaxed)
        .then(|| u64::try_from(LIVE.load(Relaxed)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_live_through_alloc_realloc_and_free() {
        let a = Counting(std::alloc::System);
        enable();
        let before = LIVE.load(Relaxed);
        let l = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a layout of non-zero size, freed with the layout and size it has.
        unsafe {
            let p = a.alloc(l);
            assert_eq!(LIVE.load(Relaxed) - before, 100);
            let p = a.realloc(p, l, 300);
            assert_eq!(LIVE.load(Relaxed) - before, 300);
            a.dealloc(p, Layout::from_size_align(300, 8).unwrap());
        }
        assert_eq!(LIVE.load(Relaxed), before);
        assert!(live_bytes().is_some());
    }
}
