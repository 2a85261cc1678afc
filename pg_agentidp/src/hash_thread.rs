//! The verifier's hashing thread, kept out of PostgreSQL's signal handling.

/// Starts the verifier's hashing thread with every signal blocked, so that PostgreSQL's handlers
/// (cancel, terminate, timeouts) keep running on the backend's own thread. The thread only
/// hashes bytes it was handed, and is joined before verification returns or unwinds.
pub(crate) fn spawn_with_signals_blocked(
    work: Box<dyn FnOnce() + Send>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // SAFETY: plain signal-mask calls on this thread, restored before returning; the new thread
    // inherits the blocked mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let spawned = std::thread::Builder::new()
            .name("agentidp-hash".to_owned())
            .spawn(work);
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}
