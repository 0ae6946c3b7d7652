//! Docker images made from the project's own binaries (no registry here):
//! a tar root file system with the binary and the shared libraries `ldd`
//! lists, loaded with `docker import`.

use crate::docker::{docker, docker_try};
use crate::util::TempDir;
use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Where `gangway-test-backend` is: next to the test binary's directory
/// (`target/debug/deps/<test>` → `target/debug/gangway-test-backend`).
pub fn backend_binary() -> PathBuf {
    workspace_binary("gangway-test-backend")
}

/// Where the workspace binary `name` is: next to the test binary's
/// directory, or in it.
pub(crate) fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(name));
        }
        candidates.push(dir.join(name));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found next to {}: run `cargo build --workspace --bins` first",
                exe.display()
            )
        })
}

/// The image of `gangway-test-backend` (`gangway-test-backend:<hash>`, the
/// binary at `/backend`), built once per binary content.
pub fn backend_image() -> String {
    image_from_binary(&backend_binary(), "backend")
}

/// The backend image with a Docker HEALTHCHECK: `/backend --probe` every
/// 300 ms; `starting` until a probe passes (a 60 s start period), then one
/// failure makes it unhealthy. Built from
/// [`backend_image`] by `docker commit --change`, once per backend build.
pub fn backend_image_with_healthcheck() -> String {
    let base = backend_image();
    let tag = base.replacen("gangway-test-backend:", "gangway-test-backend-hc:", 1) + "-sp60";
    if docker_try(["image", "inspect", "--format", "{{.Id}}", &tag]).is_ok() {
        return tag;
    }
    let container = docker(["create", base.as_str()]);
    let container = container.trim();
    let committed = docker_try([
        "commit",
        "--change",
        r#"HEALTHCHECK --interval=300ms --timeout=2s --start-period=60s --retries=1 CMD ["/backend","--probe"]"#,
        container,
        tag.as_str(),
    ]);
    let _ = docker_try(["rm", "-f", container]);
    if let Err(e) = committed {
        // Another test process may have committed the same tag meanwhile.
        if docker_try(["image", "inspect", "--format", "{{.Id}}", &tag]).is_err() {
            panic!("cannot build {tag}: {e}");
        }
    }
    tag
}

/// An image `gangway-test-<name>:<hash of the binary>` whose root file system
/// holds the binary at `/<name>` (its entrypoint) and the shared libraries it
/// needs at their absolute paths. Built at most once per binary content:
/// reused if `docker image inspect` finds the tag; a file lock keeps
/// concurrent test processes from importing the same tag twice.
pub fn image_from_binary(path: &Path, name: &str) -> String {
    static BUILT: OnceLock<Mutex<HashMap<(PathBuf, String), String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    // Held while building, so threads of one process build one at a time.
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let key = (path.to_path_buf(), name.to_string());
    if let Some(tag) = built.get(&key) {
        return tag.clone();
    }

    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut h = std::hash::DefaultHasher::new();
    h.write(&bytes);
    drop(bytes);
    let repo = format!("gangway-test-{}", sanitize(name));
    let tag = format!("{repo}:{:016x}", h.finish());

    if docker_try(["image", "inspect", "--format", "{{.Id}}", &tag]).is_err() {
        let lock_path = std::env::temp_dir().join(format!("{}.lock", tag.replace(':', "-")));
        let lock = std::fs::File::create(&lock_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
        lock.lock().expect("lock image build");
        if docker_try(["image", "inspect", "--format", "{{.Id}}", &tag]).is_err() {
            import(path, name, &repo, &tag);
        }
        let _ = lock.unlock();
    }
    built.insert(key, tag.clone());
    tag
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn import(binary: &Path, name: &str, repo: &str, tag: &str) {
    let ldd = Command::new("ldd").arg(binary).output().expect("run ldd");
    let ldd_out = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        !ldd_out.contains("not found"),
        "ldd {}: missing libraries:\n{ldd_out}",
        binary.display()
    );
    let libs = parse_ldd(&ldd_out);

    let tmp = TempDir::new();
    let root = tmp.join("rootfs");
    for dir in ["etc", "tmp", "dev", "proc", "sys"] {
        std::fs::create_dir_all(root.join(dir)).expect("create rootfs dir");
    }
    let entry = root.join(sanitize(name));
    // Strip debug info (debug builds are large); copy as is if that fails.
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&entry)
        .arg(binary)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !stripped {
        std::fs::copy(binary, &entry).unwrap_or_else(|e| panic!("copy {}: {e}", binary.display()));
    }
    set_executable(&entry);
    for lib in &libs {
        let rel = lib.strip_prefix("/").unwrap_or(lib);
        let dst = root.join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).expect("create lib dir");
        }
        // fs::copy follows symlinks: the file lands at the path ldd named.
        std::fs::copy(lib, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
        set_executable(&dst);
    }

    let tar = tmp.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(st.success(), "tar of the rootfs failed");

    let entrypoint = format!("ENTRYPOINT [\"/{}\"]", sanitize(name));
    docker([
        "import".as_ref(),
        "--change".as_ref(),
        entrypoint.as_ref(),
        "--change".as_ref(),
        format!(
            "LABEL {} gangway-test-image={repo}",
            crate::docker::TEST_LABEL
        )
        .as_ref(),
        tar.as_os_str(),
        std::ffi::OsStr::new(tag),
    ]);

    // Old builds of this image that no container uses and that are more
    // than an hour old (the one just made is not) are removed.
    let _ = docker_try([
        "image",
        "prune",
        "-a",
        "-f",
        "--filter",
        &format!("label=gangway-test-image={repo}"),
        "--filter",
        "until=1h",
    ]);
}

fn set_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
}

/// The absolute paths of the shared libraries (and the dynamic loader) in
/// `ldd`'s output; the vDSO and `not found` entries are left out; a static
/// binary gives none.
pub fn parse_ldd(output: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        let target = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim(),
            None => line,
        };
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            let p = PathBuf::from(path);
            if !libs.contains(&p) {
                libs.push(p);
            }
        }
    }
    libs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dynamic_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007fd0ab9af000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007fd0ab97e000)\n\
                   \tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007fd0ab520000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fd0ab33e000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007fd0ab9b1000)\n";
        assert_eq!(
            parse_ldd(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn parses_static_and_missing() {
        assert!(parse_ldd("\tstatically linked\n").is_empty());
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
        assert_eq!(
            parse_ldd("\tlibfoo.so.1 => not found\n\tlibc.so.6 => /usr/lib/libc.so.6 (0x1)\n"),
            vec![PathBuf::from("/usr/lib/libc.so.6")]
        );
    }

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("Gangway Bin"), "gangway-bin");
    }
}
