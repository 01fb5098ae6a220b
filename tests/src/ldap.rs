//! [`Slapd`]: Debian's OpenLDAP server as a real directory for the LDAP login tests, in a
//! throwaway directory on a free loopback port (plain LDAP with StartTLS, and LDAPS, with the
//! certificate of the TLS tests' CA when asked).
//!
//! The directory (`dc=example,dc=org`, loaded with `ldapadd` through the memberof overlay):
//! - `cn=admin,dc=example,dc=org` / [`ADMIN_PASSWORD`]: the root DN, also the service account.
//! - `ou=people`: `uid=alice` (password `alice-pw`, in `devs`), `uid=bob` (`bob-pw`, in
//!   `ops`), `uid=star*` (`star-pw`, a name with a filter metacharacter), and under
//!   `ou=contractors,ou=people` `uid=carol` (`carol-pw`, in `devs`: found only by a subtree
//!   search).
//! - `ou=groups`: `cn=devs` and `cn=ops` (groupOfNames), so users get `memberOf`.
//!
//! Drop SIGKILLs slapd and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BASE_DN: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "admin-secret";
const START_ATTEMPTS: usize = 3;
const START_TIMEOUT: Duration = Duration::from_secs(20);

const DATA: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=contractors,ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: contractors

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: alice-pw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
userPassword: bob-pw

dn: uid=star*,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: star*
cn: Star
sn: S
userPassword: star-pw

dn: uid=carol,ou=contractors,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: C
userPassword: carol-pw

dn: cn=devs,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: devs
member: uid=alice,ou=people,dc=example,dc=org
member: uid=carol,ou=contractors,ou=people,dc=example,dc=org

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: ops
member: uid=bob,ou=people,dc=example,dc=org
";

/// TLS files for slapd (PEM).
pub struct SlapdTls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

pub struct Slapd {
    /// Plain LDAP (StartTLS offered when started with TLS).
    pub port: u16,
    /// LDAPS (only when started with TLS).
    pub ldaps_port: u16,
    child: Option<Child>,
    config: PathBuf,
    urls: String,
    log: PathBuf,
    dir: TempDir,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Whether slapd and ldapadd are installed (scripts/test installs them).
pub fn slapd_available() -> bool {
    Path::new("/usr/sbin/slapd").exists() && crate::require_tool("ldapadd")
}

impl Slapd {
    /// Starts slapd and loads the directory above.
    pub fn start(tls: Option<SlapdTls<'_>>) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("berth-slapd-")
            .tempdir()
            .expect("temp dir");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("db dir");
        let mut config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             pidfile {pid}\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             moduleload memberof\n",
            pid = dir.path().join("slapd.pid").display()
        );
        if let Some(tls) = &tls {
            config.push_str(&format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\nTLSCACertificateFile {}\n",
                tls.cert.display(),
                tls.key.display(),
                tls.ca.display()
            ));
        }
        config.push_str(&format!(
            "database mdb\nmaxsize 10485760\nsuffix \"{BASE_DN}\"\nrootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\ndirectory {db}\noverlay memberof\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by * read\n",
            db = db.display()
        ));
        let config_path = dir.path().join("slapd.conf");
        std::fs::write(&config_path, config).expect("write slapd.conf");
        let log = dir.path().join("slapd.log");
        let mut slapd = Slapd {
            port: 0,
            ldaps_port: 0,
            child: None,
            config: config_path,
            urls: String::new(),
            log,
            dir,
        };
        for _ in 0..START_ATTEMPTS {
            slapd.port = free_port();
            slapd.ldaps_port = free_port();
            slapd.urls = match tls {
                Some(_) => format!(
                    "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
                    slapd.port, slapd.ldaps_port
                ),
                None => format!("ldap://127.0.0.1:{}/", slapd.port),
            };
            if slapd.run() {
                slapd.load();
                return slapd;
            }
        }
        panic!("slapd did not start: {}", slapd.log_text());
    }

    /// Starts the process on the chosen ports; false when it exited (a lost port race).
    fn run(&mut self) -> bool {
        let log = std::fs::File::create(&self.log).expect("slapd log");
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(&self.config)
            .args(["-h", &self.urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn load(&self) {
        let ldif = self.dir.path().join("data.ldif");
        std::fs::write(&ldif, DATA).expect("write ldif");
        let output = Command::new("ldapadd")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.port)])
            .args(["-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-f"])
            .arg(&ldif)
            .output()
            .expect("run ldapadd");
        assert!(
            output.status.success(),
            "ldapadd: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the server (the directory is then down), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        assert!(self.run(), "slapd did not restart: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
