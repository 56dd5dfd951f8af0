//! The process's memory, as the operating system counts it (Linux:
//! `/proc/self/status`), for the statistics lines: what a user compares
//! with the session bytes to see that nothing else grows.

/// `peak RSS ... (anonymous ..., file-backed ...)` in MiB, or `None` where
/// the counts are not available.
pub fn report() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let n: f64 = line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(n / 1024.0)
    };
    let (peak, anon, file) = (kib("VmHWM:")?, kib("RssAnon:")?, kib("RssFile:")?);
    Some(format!(
        "peak RSS {peak:.1} MiB (now {anon:.1} MiB anonymous: session, tokenizer index, program; \
         {file:.1} MiB file-backed: the mapped model and program, shared with the page cache)"
    ))
}
