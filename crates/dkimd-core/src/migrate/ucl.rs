//! The part of UCL (rspamd's configuration language, libucl) that
//! rspamd's module files use: `key = value;`, `key { … }`, `key [ … ]`,
//! quoted and bare strings, heredocs, `#` and nested `/* */` comments, and
//! `.include "path"` (followed, with `$CONFDIR`-style variables expanded).
//! Bounded: the input size (by the caller), the nesting depth and the
//! include depth.

use std::path::{Path, PathBuf};

/// The deepest nesting of objects and arrays read.
const MAX_DEPTH: usize = 64;
/// The deepest chain of includes followed.
const MAX_INCLUDES: usize = 8;
/// The most files read in all, includes counted.
const MAX_FILES: usize = 64;

/// A UCL value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ucl {
    /// A string, number or boolean, as written (unquoted).
    Str(String),
    /// An array.
    List(Vec<Ucl>),
    /// An object: its keys in order, repeats kept.
    Obj(Vec<(String, Ucl)>),
}

impl Ucl {
    /// The last value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Ucl> {
        match self {
            Ucl::Obj(items) => items.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value of `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Ucl::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean value of `key` (UCL's true/yes/on and false/no/off).
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.str(key)?.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        }
    }

    /// Every (key, value) of an object; with repeated object keys merged
    /// by the caller as it needs.
    pub fn entries(&self) -> &[(String, Ucl)] {
        match self {
            Ucl::Obj(items) => items,
            _ => &[],
        }
    }

    /// The items of an array (a single value is an array of one).
    pub fn items(&self) -> Vec<&Ucl> {
        match self {
            Ucl::List(v) => v.iter().collect(),
            other => vec![other],
        }
    }
}

/// Where rspamd's variables point on Debian (its package's build flags).
fn expand(s: &str) -> String {
    let mut out = s.to_string();
    for (var, value) in [
        ("LOCAL_CONFDIR", "/etc/rspamd"),
        ("CONFDIR", "/etc/rspamd"),
        ("DBDIR", "/var/lib/rspamd"),
        ("RUNDIR", "/run/rspamd"),
        ("LOGDIR", "/var/log/rspamd"),
    ] {
        out = out
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    out
}

/// Parses a UCL file (following its includes).
pub fn parse_file(path: &Path) -> crate::Result<(Ucl, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let v = parse_file_at(path, 0, &mut files, &[path.to_path_buf()])?;
    Ok((v, files))
}

fn parse_file_at(
    path: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
    stack: &[PathBuf],
) -> crate::Result<Ucl> {
    if depth > MAX_INCLUDES {
        return Err(crate::Error::Usage(format!(
            "{}: includes nest deeper than {MAX_INCLUDES}",
            path.display()
        )));
    }
    let text = super::read_text(path, "rspamd configuration")?;
    files.push(path.to_path_buf());
    let mut p = Parser {
        s: text.chars().collect(),
        i: 0,
        path,
        includes: depth,
        files,
        stack: stack.to_vec(),
    };
    let items = p.object_body(false, 0)?;
    Ok(Ucl::Obj(items))
}

struct Parser<'a> {
    s: Vec<char>,
    i: usize,
    path: &'a Path,
    includes: usize,
    files: &'a mut Vec<PathBuf>,
    /// The files being read, outermost first (an include of one is a loop).
    stack: Vec<PathBuf>,
}

impl Parser<'_> {
    /// The text from `start` to the current position.
    fn text(&self, start: usize) -> String {
        self.s
            .get(start..self.i)
            .unwrap_or_default()
            .iter()
            .collect()
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn line(&self) -> usize {
        self.s.iter().take(self.i).filter(|c| **c == '\n').count() + 1
    }

    fn error(&self, what: &str) -> crate::Error {
        crate::Error::Usage(format!("{}:{}: {what}", self.path.display(), self.line()))
    }

    fn starts(&self, t: &str) -> bool {
        t.chars()
            .enumerate()
            .all(|(k, c)| self.s.get(self.i + k) == Some(&c))
    }

    /// Skips white space, comments and (when `seps`) `;` and `,`.
    fn skip(&mut self, seps: bool) -> crate::Result<()> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => self.i += 1,
                Some(';' | ',') if seps => self.i += 1,
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                Some('/') if self.starts("/*") => {
                    let mut depth = 0usize;
                    loop {
                        if self.starts("/*") {
                            depth += 1;
                            self.i += 2;
                        } else if self.starts("*/") {
                            depth -= 1;
                            self.i += 2;
                            if depth == 0 {
                                break;
                            }
                        } else if self.peek().is_none() {
                            return Err(self.error("a /* comment is not closed"));
                        } else {
                            self.i += 1;
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn object_body(&mut self, braced: bool, depth: usize) -> crate::Result<Vec<(String, Ucl)>> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested deeper than 64"));
        }
        let mut items = Vec::new();
        loop {
            self.skip(true)?;
            match self.peek() {
                None if braced => return Err(self.error("a { is not closed")),
                None => return Ok(items),
                Some('}') if braced => {
                    self.i += 1;
                    return Ok(items);
                }
                Some('}') => return Err(self.error("a } closes nothing")),
                Some('.') => {
                    let included = self.directive()?;
                    items.extend(included);
                }
                _ => {
                    let key = self.key()?;
                    self.skip(false)?;
                    if matches!(self.peek(), Some('=' | ':')) {
                        self.i += 1;
                        self.skip(false)?;
                    }
                    let mut value = self.value(depth)?;
                    // `section "name" { … }` is `section { name { … } }`.
                    if let Ucl::Str(name) = &value {
                        self.skip(false)?;
                        if self.peek() == Some('{') {
                            self.i += 1;
                            let inner = self.object_body(true, depth + 1)?;
                            value = Ucl::Obj(vec![(name.clone(), Ucl::Obj(inner))]);
                        }
                    }
                    items.push((key, value));
                }
            }
        }
    }

    fn key(&mut self) -> crate::Result<String> {
        if matches!(self.peek(), Some('"' | '\'')) {
            return self.quoted();
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !"={}[]:;,\"'#".contains(c))
        {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.error(&format!(
                "expected a key, found {:?}",
                self.peek().map(String::from).unwrap_or_default()
            )));
        }
        Ok(self.text(start))
    }

    fn quoted(&mut self) -> crate::Result<String> {
        let q = self.peek().unwrap_or('"');
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("a quoted string is not closed")),
                Some('\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c) => out.push(c),
                        None => return Err(self.error("a quoted string is not closed")),
                    }
                    self.i += 1;
                }
                Some(c) if c == q => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn value(&mut self, depth: usize) -> crate::Result<Ucl> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested deeper than 64"));
        }
        match self.peek() {
            Some('{') => {
                self.i += 1;
                Ok(Ucl::Obj(self.object_body(true, depth + 1)?))
            }
            Some('[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip(true)?;
                    match self.peek() {
                        Some(']') => {
                            self.i += 1;
                            return Ok(Ucl::List(items));
                        }
                        None => return Err(self.error("a [ is not closed")),
                        _ => items.push(self.value(depth + 1)?),
                    }
                }
            }
            Some('"' | '\'') => Ok(Ucl::Str(self.quoted()?)),
            Some('<') if self.starts("<<") => self.heredoc(),
            None => Err(self.error("a value is missing")),
            _ => {
                let start = self.i;
                while self.peek().is_some_and(|c| !"\n;,}]#".contains(c)) {
                    self.i += 1;
                }
                let v: String = self.text(start);
                Ok(Ucl::Str(v.trim().to_string()))
            }
        }
    }

    fn heredoc(&mut self) -> crate::Result<Ucl> {
        self.i += 2;
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_uppercase()) {
            self.i += 1;
        }
        let tag: String = self.text(start);
        if tag.is_empty() || self.peek() != Some('\n') {
            return Err(self.error("a heredoc is <<TAG (capital letters) and a line end"));
        }
        self.i += 1;
        let mut lines = Vec::new();
        loop {
            let start = self.i;
            while self.peek().is_some_and(|c| c != '\n') {
                self.i += 1;
            }
            let line: String = self.text(start);
            if line == tag {
                return Ok(Ucl::Str(lines.join("\n")));
            }
            if self.peek().is_none() {
                return Err(self.error(&format!("heredoc {tag} is not closed")));
            }
            self.i += 1;
            lines.push(line);
        }
    }

    /// `.include(options) "path"` (followed) and other macros (skipped).
    fn directive(&mut self) -> crate::Result<Vec<(String, Ucl)>> {
        self.i += 1;
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.i += 1;
        }
        let name = self.text(start);
        if name.is_empty() {
            return Err(self.error("a . that starts no macro (.include)"));
        }
        let mut try_only = false;
        if self.peek() == Some('(') {
            let start = self.i;
            while self.peek().is_some_and(|c| c != ')') {
                self.i += 1;
            }
            let opts: String = self.text(start);
            try_only = opts.replace(' ', "").contains("try=true");
            self.i += 1;
        }
        self.skip(false)?;
        let arg = self.quoted()?;
        if name != "include" && name != "try_include" {
            return Ok(Vec::new());
        }
        let path = PathBuf::from(expand(&arg));
        let path = if path.is_absolute() {
            path
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(path)
        };
        if !path.exists() && (try_only || name == "try_include") {
            return Ok(Vec::new());
        }
        if self.stack.contains(&path) {
            return Err(self.error(&format!("{} includes itself", path.display())));
        }
        if self.files.len() >= MAX_FILES {
            return Err(self.error(&format!("more than {MAX_FILES} files included")));
        }
        let mut stack = self.stack.clone();
        stack.push(path.clone());
        match parse_file_at(&path, self.includes + 1, self.files, &stack)? {
            Ucl::Obj(items) => Ok(items),
            _ => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> crate::Result<Ucl> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.conf");
        std::fs::write(&p, text).unwrap();
        parse_file(&p).map(|(v, _)| v)
    }

    #[test]
    fn the_forms_rspamd_files_use() {
        let v = parse(
            "# comment\nenabled = true;\nselector = \"dkim\";\npath: /var/lib/rspamd/dkim/$domain.$selector.key\n\
             /* a /* nested */ comment */\ndomain {\n  example.com {\n    selectors [\n      { path = \"/k/a\"; selector = \"a\"; },\n      { path = '/k/b', selector = b }\n    ]\n  }\n  \"example.net\" = { selector = \"n\"; }\n}\n\
             worker \"proxy\" { bind_socket = \"localhost:11332\"; }\nkey = <<EOD\nline1\nline2\nEOD\n",
        )
        .unwrap();
        assert_eq!(v.bool("enabled"), Some(true));
        assert_eq!(
            v.str("path"),
            Some("/var/lib/rspamd/dkim/$domain.$selector.key")
        );
        let d = v.get("domain").unwrap();
        let sels = d
            .get("example.com")
            .unwrap()
            .get("selectors")
            .unwrap()
            .items();
        assert_eq!(sels.len(), 2);
        assert_eq!(sels[1].str("selector"), Some("b"));
        assert_eq!(d.get("example.net").unwrap().str("selector"), Some("n"));
        assert_eq!(
            v.get("worker")
                .unwrap()
                .get("proxy")
                .unwrap()
                .str("bind_socket"),
            Some("localhost:11332")
        );
        assert_eq!(v.str("key"), Some("line1\nline2"));
    }

    #[test]
    fn includes_with_options_are_followed_and_loops_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("inc.conf");
        std::fs::write(&inc, "path = \"/from/include\";\n").unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            format!(
                ".include(try=true,priority=1,duplicate=merge) \"{}\"\nselector = \"s1\";\n",
                inc.display()
            ),
        )
        .unwrap();
        let (v, files) = parse_file(&main).unwrap();
        assert_eq!(v.str("path"), Some("/from/include"));
        assert_eq!(v.str("selector"), Some("s1"));
        assert_eq!(files.len(), 2);
        assert_eq!(v.entries().len(), 2, "{v:?}");
        std::fs::write(&inc, format!(".include \"{}\"\n", main.display())).unwrap();
        assert!(parse_file(&main)
            .unwrap_err()
            .to_string()
            .contains("includes itself"));
    }

    #[test]
    fn broken_input_is_an_error_with_file_and_line() {
        let e = parse("a = 1;\nb {\n c = 2;\n").unwrap_err().to_string();
        assert!(e.contains("x.conf:4: a { is not closed"), "{e}");
        let e = parse("a = \"open\n").unwrap_err().to_string();
        assert!(e.contains("not closed"), "{e}");
        let deep = "a { ".repeat(100);
        assert!(parse(&deep).unwrap_err().to_string().contains("deeper"));
        let deep = format!("a = {}", "[".repeat(100_000));
        assert!(parse(&deep).unwrap_err().to_string().contains("deeper"));
        assert!(parse("/* never closed").is_err());
    }
}
