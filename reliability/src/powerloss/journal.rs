//! Directory entries across a power loss.
//!
//! LazyFS keeps unsynced file data in its own cache and loses it in a crash, but it
//! passes every namespace operation (create, link, rename, unlink, mkdir) straight to the
//! file system below, where it stays whatever happens next: a program that never fsyncs
//! a directory loses nothing under LazyFS alone. With the patch of `reliability/lazyfs/`,
//! LazyFS writes each namespace operation and each fsync and directory fsync, in the
//! order it carried them out, to a journal (`LAZYFS_DIROPS`), and before a file loses its
//! last name (an unlink, a rename over it) links it into a graveyard (`LAZYFS_GRAVEYARD`)
//! so that the name can be given back. After a crash the harness reads the journal and
//! undoes, on the file system below and newest first, the operations that were not
//! durable under a [`Model`]:
//!
//! * [`Model::Posix`]: a new name (create, mkdir, link, symlink, rename) is durable only
//!   once its directory has been fsynced (Linux's fsync(2): "Calling fsync() does not
//!   necessarily ensure that the entry in the directory containing the file has also
//!   reached disk. For that an explicit fsync() on a file descriptor for the directory
//!   is also needed."). POSIX orders nothing without an fsync, so a removal may reach the
//!   disk before an earlier new name: removals are taken as durable at once, the state
//!   most likely to lose a message.
//! * [`Model::Ordered`]: a journalling file system that commits namespace operations in
//!   order, all of them at any fsync (ext4 with `data=ordered` between two periodic
//!   commits): the disk holds exactly the operations up to the last fsync or directory
//!   fsync on it; everything after, removals included, is undone.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Which names survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Every name survives (LazyFS alone).
    None,
    Posix,
    Ordered,
}

impl Model {
    pub fn parse(s: &str) -> Result<Model, String> {
        match s {
            "none" => Ok(Model::None),
            "posix" => Ok(Model::Posix),
            "ordered" => Ok(Model::Ordered),
            _ => Err(format!(
                "{s}: the directory model is none, posix or ordered"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::None => "none",
            Model::Posix => "posix",
            Model::Ordered => "ordered",
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Create(PathBuf),
    Mkdir(PathBuf),
    /// Existing name, new name.
    Link(PathBuf, PathBuf),
    /// Target (any text), new name.
    Symlink(PathBuf, PathBuf),
    /// From, to, and where the file `to` named before was kept (if it existed).
    Rename(PathBuf, PathBuf, Option<PathBuf>),
    /// The name removed, and where its file was kept.
    Unlink(PathBuf, Option<PathBuf>),
    Rmdir(PathBuf),
    Fsync(PathBuf),
    Fsyncdir(PathBuf),
}

impl Entry {
    /// The name this operation made, if any.
    fn new_name(&self) -> Option<&Path> {
        match self {
            Entry::Create(p) | Entry::Mkdir(p) => Some(p),
            Entry::Link(_, p) | Entry::Symlink(_, p) | Entry::Rename(_, p, _) => Some(p),
            _ => None,
        }
    }
}

/// Drops a trailing `/` (LazyFS gives the root of its tree as `ROOT/`).
fn clean(p: &str) -> PathBuf {
    let t = p.trim_end_matches('/');
    PathBuf::from(if t.is_empty() { "/" } else { t })
}

/// A name libfuse gives a removed file that is still open (`.fuse_hiddenNNN`).
fn is_hidden(p: &str) -> bool {
    Path::new(p)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".fuse_hidden"))
}

/// Reads the journal. Lines that are not whole entries (the last one, when LazyFS was
/// killed while writing it) are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut v = Vec::new();
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            continue;
        };
        let f: Vec<&str> = line.split('\t').collect();
        let e = match f.as_slice() {
            ["create", p] => Entry::Create(clean(p)),
            ["mkdir", p] => Entry::Mkdir(clean(p)),
            ["unlink", p] => Entry::Unlink(clean(p), None),
            ["unlink", p, kept] => Entry::Unlink(clean(p), Some(clean(kept))),
            ["rmdir", p] => Entry::Rmdir(clean(p)),
            ["fsync", p] => Entry::Fsync(clean(p)),
            ["fsyncdir", p] => Entry::Fsyncdir(clean(p)),
            ["link", a, b] => Entry::Link(clean(a), clean(b)),
            ["symlink", a, b] => Entry::Symlink(PathBuf::from(a), clean(b)),
            // FUSE keeps a removed file that is still open under a hidden name: to the
            // program, and to the disk, that rename is the removal (and the hidden name
            // keeps the file until its own unlink).
            ["rename", a, b] if is_hidden(b) => Entry::Unlink(clean(a), Some(clean(b))),
            ["rename", a, b] => Entry::Rename(clean(a), clean(b), None),
            ["rename", a, b, kept] => Entry::Rename(clean(a), clean(b), Some(clean(kept))),
            _ => continue,
        };
        v.push(e);
    }
    v
}

/// What the harness does to the file system below to undo one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Remove this name (a file, a link or a symbolic link).
    Remove(PathBuf),
    /// Remove this directory and everything below it (a directory whose own name was
    /// not durable takes its contents with it).
    RemoveTree(PathBuf),
    /// Move `from` back to `to` (an undone rename, or a kept file given its name back).
    MoveBack { from: PathBuf, to: PathBuf },
}

/// The operations a crash undoes under `model`, newest first.
pub fn undo_list(entries: &[Entry], model: Model) -> Vec<Undo> {
    if model == Model::None {
        return Vec::new();
    }
    // Walking backwards: the directories fsynced later than the current entry, and
    // whether anything at all was synced later.
    let mut synced_dirs: HashSet<PathBuf> = HashSet::new();
    let mut synced_any = false;
    let mut v = Vec::new();
    for e in entries.iter().rev() {
        match e {
            Entry::Fsyncdir(d) => {
                synced_dirs.insert(d.clone());
                synced_any = true;
                continue;
            }
            Entry::Fsync(_) => {
                synced_any = true;
                continue;
            }
            _ => {}
        }
        if model == Model::Ordered && synced_any {
            // Everything older is on the disk.
            break;
        }
        if let Entry::Unlink(p, kept) = e {
            // Under posix a removal is durable at once; under ordered it is undone when
            // its file was kept.
            if model == Model::Ordered
                && let Some(k) = kept
            {
                v.push(Undo::MoveBack {
                    from: k.clone(),
                    to: p.clone(),
                });
            }
            continue;
        }
        let Some(name) = e.new_name() else { continue };
        let durable = match model {
            Model::None => true,
            Model::Posix => name.parent().is_some_and(|d| synced_dirs.contains(d)),
            Model::Ordered => false,
        };
        if durable {
            continue;
        }
        match e {
            Entry::Mkdir(p) => v.push(Undo::RemoveTree(p.clone())),
            Entry::Rename(a, b, kept) => {
                v.push(Undo::MoveBack {
                    from: b.clone(),
                    to: a.clone(),
                });
                if let Some(k) = kept {
                    v.push(Undo::MoveBack {
                        from: k.clone(),
                        to: b.clone(),
                    });
                }
            }
            _ => v.push(Undo::Remove(name.to_path_buf())),
        }
    }
    v
}

/// True when `p` lies strictly below `root` and has no `..` or `.` components.
fn inside(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
        && p != root
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Carries out the undo list on the tree at `root` (LazyFS unmounted), taking kept files
/// back from `root` or `graveyard`. An operation whose name is no longer there (it was
/// removed or renamed away later), or whose destination is taken, is skipped; a path
/// elsewhere is refused. Returns one line per change made.
pub fn apply(root: &Path, graveyard: &Path, undos: &[Undo]) -> io::Result<Vec<String>> {
    let err = |p: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    let mut done = Vec::new();
    for u in undos {
        match u {
            Undo::Remove(p) => {
                check(p, root, None)?;
                match fs::remove_file(p) {
                    Ok(()) => done.push(format!("removed {}", p.display())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(err(p, e)),
                }
            }
            Undo::RemoveTree(p) => {
                check(p, root, None)?;
                match fs::remove_dir_all(p) {
                    Ok(()) => done.push(format!("removed directory {}", p.display())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(err(p, e)),
                }
            }
            Undo::MoveBack { from, to } => {
                check(from, root, Some(graveyard))?;
                check(to, root, None)?;
                if fs::symlink_metadata(from).is_err() || fs::symlink_metadata(to).is_ok() {
                    continue;
                }
                fs::rename(from, to).map_err(|e| err(from, e))?;
                done.push(format!("moved {} back to {}", from.display(), to.display()));
            }
        }
    }
    Ok(done)
}

fn check(p: &Path, root: &Path, graveyard: Option<&Path>) -> io::Result<()> {
    if inside(p, root) || graveyard.is_some_and(|g| inside(p, g)) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "journal names {} outside {}",
            p.display(),
            root.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn parse_reads_whole_lines_only() {
        let j = "rename\t/r/q/pid/2\t/r/q/pid/.fuse_hidden0001\ncreate\t/r/q/pid/1\nlink\t/r/q/pid/1\t/r/q/mess/1\nfsyncdir\t/r/q/\nbogus\nunlink\t/r/q/pid/1\nunlink\t/r/q/pid/3\t/g/7\nrename\t/r/a\t/r/b\nrename\t/r/c\t/r/d\t/g/8\nsymlink\tx y\t/r/s\nfsync\t/r/q/mess/1\nmkdir\t/r/d\nrmdir\t/r/d\nlink\t/r/half";
        assert_eq!(
            parse(j),
            vec![
                Entry::Unlink(p("/r/q/pid/2"), Some(p("/r/q/pid/.fuse_hidden0001"))),
                Entry::Create(p("/r/q/pid/1")),
                Entry::Link(p("/r/q/pid/1"), p("/r/q/mess/1")),
                Entry::Fsyncdir(p("/r/q")),
                Entry::Unlink(p("/r/q/pid/1"), None),
                Entry::Unlink(p("/r/q/pid/3"), Some(p("/g/7"))),
                Entry::Rename(p("/r/a"), p("/r/b"), None),
                Entry::Rename(p("/r/c"), p("/r/d"), Some(p("/g/8"))),
                Entry::Symlink(p("x y"), p("/r/s")),
                Entry::Fsync(p("/r/q/mess/1")),
                Entry::Mkdir(p("/r/d")),
                Entry::Rmdir(p("/r/d")),
            ]
        );
    }

    /// netqmail's Maildir delivery: write, fsync, link, unlink, and no directory fsync.
    fn maildir_without_dirsync() -> Vec<Entry> {
        parse(
            "create\t/m/tmp/1\nfsync\t/m/tmp/1\nlink\t/m/tmp/1\t/m/new/1\nunlink\t/m/tmp/1\t/g/0\n",
        )
    }

    #[test]
    fn posix_undoes_names_whose_directory_was_not_fsynced() {
        let j = maildir_without_dirsync();
        assert_eq!(
            undo_list(&j, Model::Posix),
            vec![Undo::Remove(p("/m/new/1")), Undo::Remove(p("/m/tmp/1"))]
        );
        // rqmail's: the new/ directory is fsynced after the link.
        let mut j2 = j[..3].to_vec();
        j2.push(Entry::Fsyncdir(p("/m/new")));
        j2.push(Entry::Unlink(p("/m/tmp/1"), None));
        assert_eq!(
            undo_list(&j2, Model::Posix),
            vec![Undo::Remove(p("/m/tmp/1"))]
        );
        // A directory fsync covers only that directory, and only what came before it.
        let j3 = parse("fsyncdir\t/m/new\nlink\t/m/tmp/2\t/m/new/2\nfsyncdir\t/m/cur\n");
        assert_eq!(
            undo_list(&j3, Model::Posix),
            vec![Undo::Remove(p("/m/new/2"))]
        );
    }

    #[test]
    fn ordered_undoes_everything_after_the_last_sync() {
        let j = maildir_without_dirsync();
        // The file's fsync came before the link: the link and the unlink are undone, and
        // the message is back in tmp/ only.
        assert_eq!(
            undo_list(&j, Model::Ordered),
            vec![
                Undo::MoveBack {
                    from: p("/g/0"),
                    to: p("/m/tmp/1")
                },
                Undo::Remove(p("/m/new/1"))
            ]
        );
        let mut j2 = j.clone();
        j2.push(Entry::Fsync(p("/m/tmp/other")));
        assert!(undo_list(&j2, Model::Ordered).is_empty());
        assert!(undo_list(&j, Model::None).is_empty());
        // A removal whose file was not kept cannot be undone.
        let j3 = parse("fsync\t/m/x\nunlink\t/m/y\n");
        assert!(undo_list(&j3, Model::Ordered).is_empty());
    }

    #[test]
    fn renames_move_back_and_directories_go_whole() {
        let j = parse("mkdir\t/r/d\nrename\t/r/a\t/r/b\t/g/1\n");
        let want = vec![
            Undo::MoveBack {
                from: p("/r/b"),
                to: p("/r/a"),
            },
            Undo::MoveBack {
                from: p("/g/1"),
                to: p("/r/b"),
            },
            Undo::RemoveTree(p("/r/d")),
        ];
        assert_eq!(undo_list(&j, Model::Posix), want);
        assert_eq!(undo_list(&j, Model::Ordered), want);
    }

    /// A tree after netqmail's delivery of tmp/1 to new/1 (its file kept in the
    /// graveyard as LazyFS does), a rename a -> b, and a new directory d with a file,
    /// and the journal of it all (without the final fsync of d when `last_sync` is
    /// false).
    fn tree(last_sync: bool) -> (tempfile::TempDir, PathBuf, PathBuf, Vec<Entry>) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("lm");
        let grave = t.path().join("grave");
        for d in ["tmp", "new", "cur"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::create_dir(&grave).unwrap();
        fs::write(root.join("new/1"), "mail").unwrap();
        fs::hard_link(root.join("new/1"), grave.join("0")).unwrap();
        fs::write(root.join("cur/kept"), "old mail").unwrap();
        fs::write(root.join("b"), "renamed").unwrap();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), "x").unwrap();
        let (r, g) = (root.display(), grave.display());
        let mut text = format!(
            "create\t{r}/tmp/1\nfsync\t{r}/tmp/1\nlink\t{r}/tmp/1\t{r}/new/1\nunlink\t{r}/tmp/1\t{g}/0\nrename\t{r}/a\t{r}/b\nmkdir\t{r}/d\ncreate\t{r}/d/f\n"
        );
        if last_sync {
            text.push_str(&format!("fsyncdir\t{r}/d\n"));
        }
        let j = parse(&text);
        (t, root, grave, j)
    }

    #[test]
    fn apply_undoes_on_a_real_tree_and_stays_inside_it() {
        // posix: the removal of tmp/1 stands, new/1 goes: the mail is gone.
        let (_t, root, grave, j) = tree(true);
        let done = apply(&root, &grave, &undo_list(&j, Model::Posix)).unwrap();
        assert_eq!(done.len(), 3, "{done:?}");
        assert!(!root.join("new/1").exists());
        assert!(!root.join("tmp/1").exists());
        assert!(!root.join("d").exists());
        assert_eq!(fs::read_to_string(root.join("a")).unwrap(), "renamed");
        assert!(root.join("cur/kept").exists());
        // ordered: the last sync is the fsync of d: nothing after it, nothing undone.
        assert!(undo_list(&j, Model::Ordered).is_empty());

        // ordered without that fsync: back to the state after the fsync of tmp/1, the
        // mail in tmp/ only.
        let (t, root, grave, j) = tree(false);
        let done = apply(&root, &grave, &undo_list(&j, Model::Ordered)).unwrap();
        assert_eq!(done.len(), 5, "{done:?}");
        assert_eq!(fs::read_to_string(root.join("tmp/1")).unwrap(), "mail");
        assert!(!root.join("new/1").exists());
        assert!(!grave.join("0").exists());
        assert!(!root.join("d").exists());
        assert_eq!(fs::read_to_string(root.join("a")).unwrap(), "renamed");
        // Applying again changes nothing.
        assert!(
            apply(&root, &grave, &undo_list(&j, Model::Ordered))
                .unwrap()
                .is_empty()
        );
        // Paths outside the tree (or its graveyard), or climbing out, are refused.
        let outside = t.path().join("outside");
        fs::write(&outside, "x").unwrap();
        assert!(apply(&root, &grave, &[Undo::Remove(outside.clone())]).is_err());
        assert!(apply(&root, &grave, &[Undo::Remove(root.join("../outside"))]).is_err());
        assert!(apply(&root, &grave, &[Undo::RemoveTree(root.clone())]).is_err());
        assert!(
            apply(
                &root,
                &grave,
                &[Undo::MoveBack {
                    from: root.join("cur/kept"),
                    to: outside.clone()
                }]
            )
            .is_err()
        );
        assert!(
            apply(&root, &grave, &[Undo::Remove(grave.join("x"))]).is_err(),
            "only a kept file may be taken from the graveyard"
        );
        assert!(outside.exists());
    }
}
