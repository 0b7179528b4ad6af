# The fake SMTP server of the e2e tests (rqmail_tests::smtp_peer::SmtpServer), run by
# python3 with a JSON configuration file; every key but "dir" and "bind" is optional:
#   dir          where the transcripts go
#   bind, port   the address to listen on (port 0: any); prints the port, or "busy"
#   cert, key    the certificate and key for TLS; client_ca: ask for a client certificate
#   smtps        TLS from the start; silent: say nothing; flood: an endless greeting
#   gate         a path: each greeting waits until that file exists
#   greeting_delay, final_delay   seconds to wait before the greeting, the final reply
#   greeting, helo, starttls, mail, data, final, unknown   the replies (a string or a
#                list of lines); rcpt: {"address": reply}, else rcpt_default ("250 ok")
#   name         the host name in the EHLO and HELO replies (test.example)
#   ehlo         false: EHLO is refused; extensions: the EHLO keywords
#   tls_broken   answer STARTTLS with 220 and then bytes that are not TLS
#   pipeline_wait  seconds: note whether more commands came with MAIL
#   raw_data     keep the message as it came (CR LF, dot-stuffing) instead of unstuffed
#                with LF line ends
# Connection N leaves conn-N.log (conn-N.tmp while it lasts): "> command" lines, "tls
# VERSION CIPHER", "client CN", "pipelined True|False", "message K" when the data of message K
# of the connection ended (its data in conn-N-K.data), "data incomplete", "error ...", "end".
import json, os, select, socket, ssl, sys, threading, time
cfg = json.load(open(sys.argv[1]))
out = cfg["dir"]
name = cfg.get("name", "test.example")
lock = threading.Lock()
counter = [0]

def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg["cert"], cfg["key"])
    if cfg.get("client_ca"):
        ctx.load_verify_locations(cfg["client_ca"])
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx

class Conn:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""
    def raw_line(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        l, self.buf = self.buf.split(b"\n", 1)
        return l + b"\n"
    def line(self):
        l = self.raw_line()
        return None if l is None else l[:-1].rstrip(b"\r")
    def more_within(self, secs):
        end = time.time() + secs
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0:
                return False
            if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                if not select.select([self.sock], [], [], left)[0]:
                    return False
            d = self.sock.recv(65536)
            if not d:
                return False
            self.buf += d
        return True
    def reply(self, r):
        if not isinstance(r, list):
            r = [r]
        self.sock.sendall(b"".join(x.encode() + b"\r\n" for x in r))

def serve(sock, n):
    log = open(os.path.join(out, "conn-%d.tmp" % n), "w")
    def note(s):
        log.write(s + "\n"); log.flush()
    c = Conn(sock)
    tls = False
    queued = 0
    try:
        if cfg.get("smtps"):
            c.sock = tls_context().wrap_socket(sock, server_side=True)
            tls = True
            note("tls %s %s" % (c.sock.version(), c.sock.cipher()[0]))
        if cfg.get("silent"):
            time.sleep(3600)
        if cfg.get("flood"):
            while True:
                c.sock.sendall(b"220-flood flood flood flood flood flood flood flood flood\r\n" * 100)
        if cfg.get("gate"):
            end = time.time() + 300
            while not os.path.exists(cfg["gate"]) and time.time() < end:
                time.sleep(0.02)
        time.sleep(cfg.get("greeting_delay", 0))
        c.reply(cfg.get("greeting", "220 test.example ESMTP"))
        while True:
            l = c.line()
            if l is None:
                break
            note("> " + l.decode("latin-1"))
            verb = l.split(b" ")[0].upper()
            if verb == b"EHLO":
                if not cfg.get("ehlo", True):
                    c.reply("502 unimplemented")
                    continue
                exts = [e for e in cfg.get("extensions", ["PIPELINING", "8BITMIME"]) if not (tls and e == "STARTTLS")]
                lines = ["250-" + name] + ["250-" + e for e in exts]
                lines[-1] = "250 " + lines[-1][4:]
                c.reply(lines)
            elif verb == b"HELO":
                c.reply(cfg.get("helo", "250 " + name))
            elif verb == b"STARTTLS":
                r = cfg.get("starttls", "220 ready")
                c.reply(r)
                if r.startswith("220"):
                    if cfg.get("tls_broken"):
                        c.sock.sendall(b"this is not TLS at all\r\n" * 20)
                        time.sleep(1)
                        break
                    c.buf = b""
                    c.sock = tls_context().wrap_socket(c.sock, server_side=True)
                    tls = True
                    note("tls %s %s" % (c.sock.version(), c.sock.cipher()[0]))
                    cert = c.sock.getpeercert()
                    if cert:
                        note("client " + dict(x[0] for x in cert["subject"])["commonName"])
            elif verb == b"MAIL":
                if "pipeline_wait" in cfg:
                    note("pipelined %s" % c.more_within(cfg["pipeline_wait"]))
                c.reply(cfg.get("mail", "250 ok"))
            elif verb == b"RCPT":
                arg = l.decode("latin-1")
                addr = arg.split("<", 1)[1].rsplit(">", 1)[0] if "<" in arg else arg.split(":", 1)[-1].strip()
                c.reply(cfg.get("rcpt", {}).get(addr, cfg.get("rcpt_default", "250 ok")))
            elif verb == b"DATA":
                r = cfg.get("data", "354 go ahead")
                c.reply(r)
                if not r.startswith("354"):
                    continue
                data = b""
                while True:
                    r = c.raw_line()
                    if r is None:
                        note("data incomplete")
                        raise EOFError()
                    l = r[:-1].rstrip(b"\r")
                    if l == b".":
                        break
                    if cfg.get("raw_data"):
                        data += r
                    else:
                        data += (l[1:] if l.startswith(b".") else l) + b"\n"
                queued += 1
                open(os.path.join(out, "conn-%d-%d.data" % (n, queued)), "wb").write(data)
                note("message %d" % queued)
                time.sleep(cfg.get("final_delay", 0))
                c.reply(cfg.get("final", "250 ok queued"))
            elif verb == b"QUIT":
                c.reply("221 bye")
                break
            else:
                c.reply(cfg.get("unknown", "502 unimplemented"))
    except Exception as e:
        note("error %r" % e)
    finally:
        note("end")
        log.close()
        os.rename(os.path.join(out, "conn-%d.tmp" % n), os.path.join(out, "conn-%d.log" % n))
        try:
            c.sock.close()
        except Exception:
            pass

ls = socket.socket(socket.AF_INET6 if ":" in cfg["bind"] else socket.AF_INET)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    ls.bind((cfg["bind"], cfg.get("port", 0)))
except OSError:
    print("busy", flush=True)
    sys.exit(1)
ls.listen(128)
print(ls.getsockname()[1], flush=True)
while True:
    s, _ = ls.accept()
    with lock:
        counter[0] += 1
        n = counter[0]
    threading.Thread(target=serve, args=(s, n), daemon=True).start()
