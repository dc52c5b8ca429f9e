//! The C allocator's settings for CPU training.

/// Makes the C allocator keep freed memory for reuse instead of returning it to the system;
/// returns whether the setting took. Call once, at the start of a program that trains on
/// the CPU (the `dwlth` binary and the examples do).
///
/// A CPU training step allocates and frees gigabytes of activations and gradients, many of
/// them 32 MiB or more (ResNet-18's first stage at batch 128 is exactly 32 MiB a tensor).
/// glibc serves such sizes with fresh memory maps and unmaps them on free, so every step
/// touches them anew: one page fault and one zeroed page per 4 KiB. Raising the map and trim
/// thresholds to 1 GiB makes the heap recycle them: ResNet-18-CIFAR training steps ran 8 %
/// faster here (docs/performance.md). Process-wide, like any allocator setting; a no-op
/// (returning `false`) where the C library is not glibc.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_allocator_thresholds() {
        assert!(super::keep_freed_memory());
    }
}
