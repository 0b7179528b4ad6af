//! Jobs (one pass of one message on one channel), deliveries and the spawn
//! connections.

use super::*;

impl Send {
    pub(super) fn job_avail(&self) -> bool {
        self.jobs_used < self.numjobs()
    }

    pub(super) fn job_open(
        &mut self,
        id: u64,
        channel: usize,
        retry: u64,
        sender: Vec<u8>,
        flagdying: bool,
    ) -> usize {
        let job = Job {
            refs: 1,
            id,
            channel,
            retry,
            sender,
            numtodo: 0,
            flaghiteof: false,
            flagdying,
        };
        self.jobs_used += 1;
        match self.free_jobs.pop() {
            Some(j) => {
                self.jobs[j] = Some(job);
                j
            }
            None => {
                self.jobs.push(Some(job));
                self.jobs.len() - 1
            }
        }
    }

    pub(super) fn job_close(&mut self, j: usize) {
        let Some(job) = self.jobs.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        job.refs = job.refs.saturating_sub(1);
        if job.refs > 0 {
            return;
        }
        let Some(job) = self.jobs[j].take() else {
            return;
        };
        self.free_jobs.push(j);
        self.jobs_used -= 1;
        let mut dt = job.retry;
        if job.flaghiteof && job.numtodo == 0 {
            let f = chan_fn(job.id, job.channel);
            if std::fs::remove_file(&f).is_err() {
                warn(&["warning: unable to unlink ", &f, "; will try again later\n"]);
                dt = control::now() + SLEEP_SYSFAIL;
            } else {
                for c in 0..CHANNELS {
                    if c == job.channel {
                        continue;
                    }
                    let f = chan_fn(job.id, c);
                    match std::fs::metadata(&f) {
                        Ok(_) => return, // the other channel is still going
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(_) => {
                            warn(&["warning: unable to stat ", &f, "\n"]);
                            break;
                        }
                    }
                }
                self.pqdone.insert(control::now(), job.id);
                return;
            }
        }
        // A held message is parked: it waits in no queue until it is released.
        if !self.held.contains(&job.id) {
            self.chans[job.channel].pq.insert(dt, job.id);
        }
    }

    pub(super) fn del_canexit(&self) -> bool {
        self.chans.iter().all(|c| !c.alive || c.used == 0)
    }

    pub(super) fn del_start(&mut self, j: usize, mpos: u64, recip: &[u8]) {
        let Some(job) = self.jobs.get(j).and_then(Option::as_ref) else {
            return;
        };
        let c = job.channel;
        let (id, sender) = (job.id, job.sender.clone());
        let ch = &mut self.chans[c];
        if !ch.alive || !ch.comm_canwrite() {
            return;
        }
        let limit = u32::try_from(ch.concurrency).unwrap_or(u32::MAX);
        let Some(&i) = ch.free.range(..limit).next() else {
            return;
        };
        ch.free.remove(&i);
        let delid = self.masterdelid;
        self.masterdelid += 1;
        ch.dels[i as usize] = Some(Del {
            job: j,
            delid,
            mpos,
            recip: recip.to_vec(),
        });
        ch.used += 1;
        let cmd = proto::command(
            ch.width,
            i,
            split_fn(id).as_bytes(),
            &rewrite::sender_for(&sender, recip),
            recip,
        );
        ch.pending.extend_from_slice(&cmd);
        if let Some(job) = self.jobs[j].as_mut() {
            job.refs += 1;
        }
        log::line(
            Line::new()
                .s("starting delivery ")
                .n(delid)
                .s(": msg ")
                .n(id)
                .s(TOCHAN[c])
                .safe(recip)
                .s("\n"),
        );
        self.del_status();
    }

    pub(super) fn markdone(&self, c: usize, id: u64, pos: u64) {
        let f = chan_fn(id, c);
        let ok = (|| -> io::Result<()> {
            let mut file = OpenOptions::new().write(true).open(&f)?;
            file.seek(SeekFrom::Start(pos))?;
            file.write_all(b"D")
        })();
        if ok.is_err() {
            warn(&[
                "warning: trouble marking ",
                &f,
                "; message will be delivered twice!\n",
            ]);
        }
    }

    pub(super) fn del_report(&mut self, c: usize, delnum: u32, mut text: Vec<u8>) {
        let slot = usize::try_from(delnum).unwrap_or(usize::MAX);
        let Some(del) = self.chans[c].dels.get_mut(slot).and_then(Option::take) else {
            log::text("warning: internal error: delivery report out of range\n");
            return;
        };
        let (jid, dying) = match self.jobs.get(del.job).and_then(Option::as_ref) {
            Some(j) => (j.id, j.flagdying),
            None => (0, false),
        };
        if text.first() == Some(&b'Z') && dying {
            text[0] = b'D';
            text.extend_from_slice(bounce::TOO_LONG);
        }
        let head = Line::new().s("delivery ").n(del.delid);
        let letter = match text.first() {
            Some(&l @ (b'K' | b'D')) => l,
            _ => b'Z',
        };
        self.qctl_outcome(del.delid, letter);
        match text.first() {
            Some(b'K') => {
                log::line(head.s(": success: ").safe(&text[1..]).s("\n"));
                self.markdone(c, jid, del.mpos);
                if let Some(j) = self.jobs[del.job].as_mut() {
                    j.numtodo = j.numtodo.saturating_sub(1);
                }
            }
            Some(b'Z') => log::line(head.s(": deferral: ").safe(&text[1..]).s("\n")),
            Some(b'D') => {
                log::line(head.s(": failure: ").safe(&text[1..]).s("\n"));
                self.addbounce(jid, &del.recip, &text[1..]);
                self.markdone(c, jid, del.mpos);
                if let Some(j) = self.jobs[del.job].as_mut() {
                    j.numtodo = j.numtodo.saturating_sub(1);
                }
            }
            _ => log::line(head.s(": report mangled, will defer\n")),
        }
        self.job_close(del.job);
        self.chans[c].free.insert(delnum);
        self.chans[c].used -= 1;
        self.del_status();
    }

    pub(super) fn del_do(&mut self, c: usize) {
        if !self.chans[c].alive {
            return;
        }
        let mut total = 0;
        let mut buf = vec![0u8; 8192];
        while total < REPORT_READ {
            match nix::unistd::read(&self.chans[c].inp, &mut buf) {
                Ok(0) => {
                    self.spawndied(c);
                    return;
                }
                Ok(n) => {
                    total += n;
                    let mut got = Vec::new();
                    self.chans[c].reports.feed(&buf[..n], &mut got);
                    for (d, text) in got {
                        self.del_report(c, d, text);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    pub(super) fn comm_do(&mut self, c: usize) {
        let ch = &mut self.chans[c];
        if !ch.alive || ch.pending.is_empty() {
            return;
        }
        match nix::unistd::write(&ch.out, &ch.pending) {
            Ok(n) => {
                ch.pending.drain(..n);
            }
            Err(nix::errno::Errno::EPIPE) => self.spawndied(c),
            Err(_) => {}
        }
    }

    /// One step of reading a channel's recipient list. True when it did something.
    pub(super) fn pass_dochan(&mut self, c: usize) -> bool {
        if self.exitasap || self.chans[c].paused {
            return false;
        }
        if self.chans[c].pass.is_none() {
            if !self.job_avail() {
                return false;
            }
            let Some((dt, id)) = self.chans[c].pq.min() else {
                return false;
            };
            if dt > self.recent {
                return false;
            }
            self.chans[c].pq.delmin();
            if self.held.contains(&id) {
                return true; // parked (it should not have been queued)
            }
            let f = chan_fn(id, c);
            let opened = File::open(&f)
                .ok()
                .and_then(|file| getinfo(id).map(|info| (file, info)));
            let Some((file, (sender, birth))) = opened else {
                warn(&["warning: trouble opening ", &f, "; will try again later\n"]);
                self.chans[c].pq.insert(self.recent + SLEEP_SYSFAIL, id);
                return true;
            };
            let retry = sched::nextretry(birth, self.recent, c);
            let dying = self.recent > birth.saturating_add(self.cfg.lifetime);
            let j = self.job_open(id, c, retry, sender, dying);
            self.chans[c].pass = Some(Pass {
                id,
                job: j,
                reader: BufReader::with_capacity(4096, file),
                mpos: 0,
            });
        }
        if !self.chans[c].del_avail() {
            return false;
        }
        let Some(pass) = self.chans[c].pass.as_mut() else {
            return false;
        };
        let (id, j) = (pass.id, pass.job);
        let r = read_bounded(&mut pass.reader, 0, MAX_RECORD);
        let line = match r {
            Ok(BoundedLine::Line(l)) => l,
            Ok(BoundedLine::Eof(_)) => {
                self.chans[c].pass = None;
                if let Some(job) = self.jobs[j].as_mut() {
                    job.flaghiteof = true;
                }
                self.job_close(j);
                return true;
            }
            Ok(BoundedLine::TooLong) | Err(_) => {
                let f = chan_fn(id, c);
                warn(&["warning: trouble reading ", &f, "; will try again later\n"]);
                self.chans[c].pass = None;
                self.job_close(j);
                return true;
            }
        };
        let mpos = pass.mpos;
        pass.mpos += line.len() as u64;
        match line[0] {
            b'T' => {
                if let Some(job) = self.jobs[j].as_mut() {
                    job.numtodo += 1;
                }
                self.del_start(j, mpos, &line[1..line.len() - 1]);
            }
            b'D' => {}
            _ => {
                let f = chan_fn(id, c);
                warn(&["warning: unknown record type in ", &f, "!\n"]);
                self.chans[c].pass = None;
                self.job_close(j);
            }
        }
        true
    }

    pub(super) fn pass_do(&mut self) {
        for c in 0..CHANNELS {
            for _ in 0..START_BATCH {
                if !self.pass_dochan(c) {
                    break;
                }
            }
            self.comm_do(c);
        }
        if let Some((dt, id)) = self.pqfail.min()
            && dt <= self.recent
        {
            self.pqfail.delmin();
            self.pqadd(id);
        }
        if let Some((dt, id)) = self.pqdone.min()
            && dt <= self.recent
        {
            self.pqdone.delmin();
            self.messdone(id);
        }
    }

    pub(super) fn pass_wakeup(&self, wakeup: &mut u64) {
        if self.exitasap {
            return;
        }
        for c in &self.chans {
            if c.pass.is_some() && c.del_avail() && !c.paused {
                *wakeup = 0;
                return;
            }
        }
        if self.job_avail() {
            for c in &self.chans {
                if c.pass.is_none()
                    && !c.paused
                    && let Some((dt, _)) = c.pq.min()
                {
                    *wakeup = (*wakeup).min(dt);
                }
            }
        }
        if let Some((dt, _)) = self.pqfail.min() {
            *wakeup = (*wakeup).min(dt);
        }
        if let Some((dt, _)) = self.pqdone.min() {
            *wakeup = (*wakeup).min(dt);
        }
    }
}
