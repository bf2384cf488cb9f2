//! Proxy authentication: users and bcrypt hashes from an htpasswd file, `Proxy-Authorization:
//! Basic` checks, and a small cache of recent verdicts so bcrypt runs once per credential.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use data_encoding::{BASE64, BASE64_NOPAD};
use sha1::{Digest, Sha1};

use super::table::{read_text, TableError};

/// Most verdicts of each kind kept; a full set is cleared rather than aged, which is cheap and
/// only costs a few repeated bcrypt runs.
const CACHE_CAPACITY: usize = 4096;

/// Who may use the proxy, and what was recently decided about which header values.
pub struct ProxyAuth {
    /// User name (raw bytes, as they arrive in the header) to its bcrypt hash.
    users: HashMap<Box<[u8]>, String>,
    /// Hash of the same cost as the users' ones, checked for unknown users so that the time
    /// an answer takes does not reveal which user names exist.
    decoy_hash: Option<String>,
    /// Per-process salt for the cache digests, so a memory dump holds no table-friendly
    /// digest of anyone's credentials.
    salt: [u8; 16],
    cache: Mutex<VerdictCache>,
}

/// Digests of header values already verified. Good and bad verdicts live apart so a flood of
/// wrong guesses cannot evict the users who logged in correctly.
#[derive(Default)]
struct VerdictCache {
    good: HashSet<[u8; 20]>,
    bad: HashSet<[u8; 20]>,
}

impl ProxyAuth {
    /// Reads an htpasswd file: `user:hash` lines, `#` comment lines and blank lines. Only
    /// bcrypt hashes are accepted, since the others are fast to brute-force (or plain text).
    pub fn load(path: &Path) -> Result<ProxyAuth, TableError> {
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<ProxyAuth, TableError> {
        // Each user with the line it came from, for the duplicate message.
        let mut listed: HashMap<Box<[u8]>, (usize, String)> = HashMap::new();
        let mut max_cost = None;
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |message: String| TableError::at(path, line_no, message);
            // The hash half is never quoted in a message: a bad line may hold a plain password.
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| fail("expected user:hash".to_string()))?;
            if user.is_empty() {
                return Err(fail("empty user name".to_string()));
            }
            let cost = bcrypt_cost(hash).map_err(|why| fail(format!("user {user:?}: {why}")))?;
            max_cost = max_cost.max(Some(cost));
            match listed.entry(user.as_bytes().into()) {
                Entry::Occupied(first) => {
                    return Err(fail(format!(
                        "user {user:?} is listed twice (first on line {})",
                        first.get().0
                    )))
                }
                Entry::Vacant(slot) => {
                    slot.insert((line_no, hash.to_string()));
                }
            }
        }
        let users = listed
            .into_iter()
            .map(|(user, (_, hash))| (user, hash))
            .collect();
        let decoy_hash = match max_cost {
            Some(cost) => Some(
                bcrypt::hash_with_salt(b"decoy", cost, [0x5a; 16])
                    .map(|parts| parts.to_string())
                    .map_err(|e| TableError::at(path, 0, format!("cannot hash: {e}")))?,
            ),
            None => None,
        };
        Ok(ProxyAuth {
            users,
            decoy_hash,
            salt: random_salt(),
            cache: Mutex::new(VerdictCache::default()),
        })
    }

    /// How many users the file listed.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// The verdict for a `Proxy-Authorization` value if it was verified recently; `None`
    /// means only [`ProxyAuth::verify`] can tell. Cheap enough for a core thread.
    pub fn check_cached(&self, proxy_authorization: &[u8]) -> Option<bool> {
        let digest = self.digest(proxy_authorization);
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.good.contains(&digest) {
            Some(true)
        } else if cache.bad.contains(&digest) {
            Some(false)
        } else {
            None
        }
    }

    /// Checks a `Proxy-Authorization` value (`Basic <base64 of user:password>`) against the
    /// file and remembers the verdict. Runs bcrypt, so call it off the core threads.
    pub fn verify(&self, proxy_authorization: &[u8]) -> bool {
        if let Some(verdict) = self.check_cached(proxy_authorization) {
            return verdict;
        }
        let verdict = self.verify_uncached(proxy_authorization);
        let digest = self.digest(proxy_authorization);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let set = if verdict {
            &mut cache.good
        } else {
            &mut cache.bad
        };
        if set.len() >= CACHE_CAPACITY {
            set.clear();
        }
        set.insert(digest);
        verdict
    }

    fn verify_uncached(&self, proxy_authorization: &[u8]) -> bool {
        let Some(decoded) = basic_credentials(proxy_authorization) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                if let Some(decoy) = &self.decoy_hash {
                    let _ = bcrypt::verify(password, decoy);
                }
                false
            }
        }
    }

    fn digest(&self, value: &[u8]) -> [u8; 20] {
        let mut hasher = Sha1::new();
        hasher.update(self.salt);
        hasher.update(value);
        hasher.finalize().into()
    }
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// The cost of a bcrypt hash in a form `htpasswd -B` writes, or why the hash is refused.
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    const ONLY_BCRYPT: &str = "only bcrypt hashes are supported (create them with `htpasswd -B`)";
    if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        let kind = if hash.starts_with("$apr1$") {
            "an MD5 ($apr1$) hash"
        } else if hash.starts_with("{SHA}") {
            "a SHA-1 ({SHA}) hash"
        } else if hash.starts_with('$') {
            "a crypt hash"
        } else {
            "plain text or DES crypt"
        };
        return Err(format!("{kind}: {ONLY_BCRYPT}"));
    }
    let parts =
        bcrypt::HashParts::from_str(hash).map_err(|e| format!("malformed bcrypt hash ({e})"))?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside 4 to 31"));
    }
    Ok(cost)
}

/// The decoded `user:password` bytes of a `Basic` credential, or `None` if it is not one.
fn basic_credentials(value: &[u8]) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ' || b == b'\t')?;
    let (scheme, token) = (&value[..space], value[space..].trim_ascii_start());
    if !scheme.eq_ignore_ascii_case(b"basic") || token.is_empty() {
        return None;
    }
    // Some clients leave off the padding; nothing is gained by refusing them.
    BASE64
        .decode(token)
        .or_else(|_| BASE64_NOPAD.decode(token))
        .ok()
}

/// Random bytes from the standard library's per-process hash keys, enough for a salt without
/// another dependency.
fn random_salt() -> [u8; 16] {
    let state = RandomState::new();
    let mut salt = [0u8; 16];
    salt[..8].copy_from_slice(&state.hash_one(0u8).to_le_bytes());
    salt[8..].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
    salt
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(user_password: &str) -> Vec<u8> {
        format!("Basic {}", BASE64.encode(user_password.as_bytes())).into_bytes()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn auth() -> ProxyAuth {
        let alice = bcrypt::hash("correct horse", 4).unwrap();
        let bob = bcrypt::hash_with_result("pa:ss", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        let f = file(&format!(
            "# proxy users\n\nalice:{alice}\n  bob:{bob}  \r\n"
        ));
        ProxyAuth::load(f.path()).unwrap()
    }

    #[test]
    fn good_password_passes_and_others_fail() {
        let auth = auth();
        assert_eq!(auth.user_count(), 2);
        assert!(auth.verify(&header("alice:correct horse")));
        assert!(
            auth.verify(&header("bob:pa:ss")),
            "password split at the first colon"
        );
        assert!(!auth.verify(&header("alice:wrong")));
        assert!(!auth.verify(&header("alice:")));
        assert!(!auth.verify(&header("mallory:correct horse")));
        assert!(!auth.verify(&header(":correct horse")));
    }

    #[test]
    fn scheme_is_case_insensitive_and_padding_optional() {
        let auth = auth();
        let token = BASE64.encode(b"alice:correct horse");
        assert!(auth.verify(format!("bAsIc   {token} ").as_bytes()));
        assert!(auth.verify(format!("BASIC {}", token.trim_end_matches('=')).as_bytes()));
    }

    #[test]
    fn malformed_and_other_schemes_fail() {
        let auth = auth();
        let token = BASE64.encode(b"alice:correct horse");
        for bad in [
            "".to_string(),
            "Basic".to_string(),
            "Basic ".to_string(),
            format!("Bearer {token}"),
            format!("Digest {token}"),
            format!("Basic{token}"),
            "Basic !!!not-base64!!!".to_string(),
            format!("Basic {}", BASE64.encode(b"alice-no-colon")),
        ] {
            assert!(!auth.verify(bad.as_bytes()), "{bad:?} must fail");
        }
        assert!(!auth.verify(b"Basic \xff\xfe"));
    }

    #[test]
    fn cache_answers_the_second_time() {
        let auth = auth();
        let good = header("alice:correct horse");
        let bad = header("alice:nope");
        assert_eq!(auth.check_cached(&good), None);
        assert_eq!(auth.check_cached(&bad), None);
        assert!(auth.verify(&good));
        assert!(!auth.verify(&bad));
        assert_eq!(auth.check_cached(&good), Some(true));
        assert_eq!(auth.check_cached(&bad), Some(false));
        assert_eq!(auth.check_cached(&header("bob:pa:ss")), None);
    }

    #[test]
    fn bad_guesses_cannot_evict_good_verdicts() {
        let auth = auth();
        let good = header("alice:correct horse");
        assert!(auth.verify(&good));
        for i in 0..=CACHE_CAPACITY {
            assert!(!auth.verify(format!("Basic x{i}").as_bytes()));
        }
        assert_eq!(auth.check_cached(&good), Some(true));
        let cache = auth.cache.lock().unwrap();
        assert!(cache.bad.len() <= CACHE_CAPACITY);
    }

    #[test]
    fn cache_keeps_digests_not_secrets() {
        let auth = auth();
        let good = header("alice:correct horse");
        assert!(auth.verify(&good));
        let cache = auth.cache.lock().unwrap();
        let stored = cache.good.iter().next().unwrap();
        assert_ne!(&stored[..], &good[..20]);
        assert_ne!(
            stored,
            &<[u8; 20]>::from(Sha1::digest(&good)),
            "digest is salted"
        );
    }

    #[test]
    fn shareable_with_a_blocking_pool() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ProxyAuth>();
    }

    #[test]
    fn file_errors_name_their_line() {
        let good = bcrypt::hash("pw", 4).unwrap();
        let cases: Vec<(String, usize, &str)> = vec![
            (format!("a:{good}\nb:secret\n"), 2, "plain text"),
            ("# c\na:$apr1$abc$def\n".into(), 2, "MD5"),
            ("a:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=".into(), 1, "SHA-1"),
            ("a:$1$salt$hash".into(), 1, "crypt"),
            ("a:$2y$04$short".into(), 1, "malformed bcrypt"),
            ("\n\njust-a-name\n".into(), 3, "expected user:hash"),
            (format!(":{good}"), 1, "empty user name"),
            (
                format!("a:{good}\n\nb:{good}\na:{good}\n"),
                4,
                "\"a\" is listed twice (first on line 1)",
            ),
        ];
        for (text, line, needle) in cases {
            let f = file(&text);
            let e = ProxyAuth::load(f.path()).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(
                !e.message.contains("secret"),
                "no password in messages: {e}"
            );
        }
        let plain = file("a:secret\n");
        let shown = ProxyAuth::load(plain.path()).unwrap_err().to_string();
        assert!(
            shown.contains(&format!("{}:1:", plain.path().display())),
            "{shown}"
        );
        assert!(
            shown.contains("only bcrypt hashes are supported"),
            "{shown}"
        );
        assert!(shown.contains("htpasswd -B"), "{shown}");
    }

    #[test]
    fn missing_file_and_empty_file() {
        let e = ProxyAuth::load(Path::new("/nonexistent/htpasswd")).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e
            .to_string()
            .starts_with("/nonexistent/htpasswd: cannot read"));
        let empty = ProxyAuth::load(file("# nobody yet\n").path()).unwrap();
        assert_eq!(empty.user_count(), 0);
        assert!(!empty.verify(&header("alice:correct horse")));
    }
}
