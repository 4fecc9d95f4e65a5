//! A Lambda function's CPU share, imposed on a function process with a cgroup.
//!
//! Lambda gives a function CPU in proportion to its memory: 1,769 MB is one vCPU, so a 128 MB
//! function gets 128/1769 of one (7.2 %). CFS bandwidth control does the same here: a cgroup
//! whose quota is that share of each period (`cpu.max` on cgroup v2, `cpu.cfs_quota_us` over
//! `cpu.cfs_period_us` on v1's `cpu` controller). A process is put into it by the harness
//! itself acting as launcher (`smla-bench cgroup-exec`): it writes its own pid to the group's
//! `cgroup.procs` and then `exec`s the function, so not one instruction of the function runs
//! outside the quota. The null function is launched the same way, so its floor includes the
//! launcher too.
//!
//! AWS does not document how much CPU the init phase gets; the share here applies to init and
//! invocations alike, the pessimistic reading.

use std::path::{Path, PathBuf};

use crate::Error;

/// Memory that buys one full vCPU on Lambda.
pub const MB_PER_VCPU: f64 = 1769.0;
/// CFS period (µs): the kernel's default.
pub const PERIOD_US: u64 = 100_000;

/// A cgroup with a CPU quota, removed when dropped (once its processes are gone).
#[derive(Debug)]
pub struct CpuShare {
    dir: PathBuf,
    pub memory_mb: u32,
    pub quota_us: u64,
    pub period_us: u64,
    /// `cgroup v2 cpu.max` or `cgroup v1 cpu.cfs_quota_us`.
    pub interface: &'static str,
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl CpuShare {
    /// A cgroup giving the CPU share of a function of `memory_mb`, under this process's own
    /// cgroup. The error says exactly why that is not possible here.
    pub fn create(memory_mb: u32) -> Result<Self, Error> {
        let period_us = PERIOD_US;
        let quota_us = (f64::from(memory_mb) / MB_PER_VCPU * period_us as f64).round() as u64;
        let name = format!("smla-bench-{}-{memory_mb}mb", std::process::id());
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let v2_has_cpu = std::fs::read_to_string(v2)
            .is_ok_and(|c| c.split_whitespace().any(|controller| controller == "cpu"));
        let v1 = Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
        let (dir, interface) = if v2_has_cpu {
            let parent = Path::new("/sys/fs/cgroup").join(own_path(&own, |c| c.is_empty())?);
            // The parent must hand the cpu controller down to its children.
            write(&parent.join("cgroup.subtree_control"), "+cpu")?;
            let dir = parent.join(&name);
            mkdir(&dir)?;
            write(&dir.join("cpu.max"), &format!("{quota_us} {period_us}"))?;
            (dir, "cgroup v2 cpu.max")
        } else if v1.is_file() {
            let path = own_path(&own, |c| c.split(',').any(|c| c == "cpu"))?;
            let dir = Path::new("/sys/fs/cgroup/cpu").join(path).join(&name);
            mkdir(&dir)?;
            write(&dir.join("cpu.cfs_period_us"), &period_us.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &quota_us.to_string())?;
            (dir, "cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us")
        } else {
            return Err(format!(
                "no cpu controller: {} lists none and {} does not exist",
                v2.display(),
                v1.display()
            )
            .into());
        };
        Ok(Self {
            dir,
            memory_mb,
            quota_us,
            period_us,
            interface,
        })
    }

    /// The launcher that starts a program inside this cgroup: `smla-bench cgroup-exec`.
    pub fn launcher(&self) -> Result<Vec<String>, Error> {
        Ok(vec![
            std::env::current_exe()?.display().to_string(),
            "cgroup-exec".to_owned(),
            "--procs".to_owned(),
            self.dir.join("cgroup.procs").display().to_string(),
            "--".to_owned(),
        ])
    }

    /// The share as the report states it.
    pub fn describe(&self) -> String {
        format!(
            "{} MB's share: {} µs of CPU per {} µs ({}, {:.1} % of one core)",
            self.memory_mb,
            self.quota_us,
            self.period_us,
            self.interface,
            self.quota_us as f64 / self.period_us as f64 * 100.0
        )
    }
}

/// This process's path in the hierarchy whose controller list matches `controllers`.
fn own_path(proc_cgroup: &str, controllers: impl Fn(&str) -> bool) -> Result<PathBuf, Error> {
    proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers(list).then(|| PathBuf::from(path.trim_start_matches('/')))
        })
        .next()
        .ok_or_else(|| Error::from("this process is in no cgroup with a cpu controller"))
}

fn mkdir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()).into())
}

fn write(file: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(file, value)
        .map_err(|e| format!("cannot write {value:?} to {}: {e}", file.display()).into())
}

/// The `cgroup-exec` subcommand: joins the cgroup whose `cgroup.procs` is `procs`, then
/// becomes `command` (same environment, same pid).
pub fn exec_in(procs: &Path, command: &[String]) -> Result<(), Error> {
    use std::os::unix::process::CommandExt as _;

    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::from("cgroup-exec needs a command"))?;
    write(procs, &std::process::id().to_string())?;
    let error = std::process::Command::new(program).args(args).exec();
    Err(format!("cannot exec {program}: {error}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cpu_hierarchy_in_proc_self_cgroup() {
        let v1 = "4:memory:/a\n3:cpu,cpuacct:/b/c\n0::/d\n";
        assert_eq!(
            own_path(v1, |c| c.split(',').any(|c| c == "cpu")).unwrap(),
            PathBuf::from("b/c")
        );
        assert_eq!(own_path(v1, |c| c.is_empty()).unwrap(), PathBuf::from("d"));
    }
}
