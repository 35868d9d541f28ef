//! Kafka's `ssl.principal.mapping.rules`: how a client certificate's subject becomes a
//! principal on swap routes whose clients log in with mTLS.
//!
//! The syntax and behaviour are Kafka's (`SslPrincipalMapper`), so a broker's rules can be
//! copied as they are: a comma-separated list of `RULE:<pattern>/<replacement>/[L|U]` and
//! `DEFAULT`. The subject is the RFC 2253 form Java prints (`CN=alice,OU=eng,O=Example`, most
//! specific first). The first rule whose pattern matches the *whole* subject gives the
//! principal: every match replaced by the replacement (`$1` names a group), then lower- or
//! upper-cased with `/L` or `/U`; `DEFAULT` gives the subject unchanged. No rule matching is a
//! refusal. The splitting and parsing regular expressions are Kafka's own, so odd inputs
//! (commas inside a rule's pattern, blanks around rules) split the same way.

use regex::Regex;

/// Kafka's `RULE_PATTERN` (SslPrincipalMapper), in Rust's regex syntax.
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)";

/// Parsed rules, in order.
#[derive(Debug, Clone)]
pub struct PrincipalRules {
    text: String,
    rules: Vec<Rule>,
}

impl PartialEq for PrincipalRules {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PrincipalRules {}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// The pattern anchored at both ends: Java's `Matcher.matches()`.
        whole: Regex,
        pattern: Regex,
        /// In Rust's replacement syntax (`${1}`, `$$`).
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

impl PrincipalRules {
    /// Parse the rules text (a list is joined with commas first); errors name the bad rule.
    pub fn parse(text: &str) -> Result<PrincipalRules, String> {
        let splitter = Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(?:,\s*|$)")).expect("Kafka's splitter compiles");
        let parser = Regex::new(&format!("^(?:{RULE_PATTERN})")).expect("Kafka's rule parser compiles");
        let mut rules = Vec::new();
        for found in splitter.captures_iter(text.trim()) {
            let rule = found.get(1).map_or("", |m| m.as_str());
            if rule.is_empty() {
                continue;
            }
            let parsed = parser.captures(rule).filter(|c| c.get(0).is_some_and(|m| m.end() == rule.len()));
            let Some(parsed) = parsed.filter(|c| c.get(1).is_some() || c.get(2).is_some()) else {
                return Err(format!("`{rule}` is not a rule (`RULE:<pattern>/<replacement>/[L|U]` or `DEFAULT`)"));
            };
            if parsed.get(1).is_some() {
                rules.push(Rule::Default);
                continue;
            }
            let source = &parsed[2];
            let bad = |e: regex::Error| format!("`{rule}`: the pattern does not compile: {e}");
            let case = match &parsed[4] {
                "L" => Case::Lower,
                "U" => Case::Upper,
                _ => Case::Keep,
            };
            rules.push(Rule::Replace {
                whole: Regex::new(&format!("^(?:{source})$")).map_err(bad)?,
                pattern: Regex::new(source).map_err(bad)?,
                replacement: java_replacement(&parsed[3]),
                case,
            });
        }
        if rules.is_empty() {
            return Err("holds no rule".into());
        }
        Ok(PrincipalRules { text: text.to_string(), rules })
    }

    /// The principal of the subject `dn`, or `None` when no rule applies.
    pub fn apply(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Replace { whole, pattern, replacement, case } => {
                if !whole.is_match(dn) {
                    return None;
                }
                let replaced = pattern.replace_all(dn, replacement.as_str()).into_owned();
                Some(match case {
                    Case::Keep => replaced,
                    Case::Lower => replaced.to_lowercase(),
                    Case::Upper => replaced.to_uppercase(),
                })
            }
        })
    }
}

/// A Java `replaceAll` replacement, as Kafka passes it (backslashes literal), in Rust's syntax:
/// `$<digits>` and `${name}` name groups, every other `$` is literal.
fn java_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 8);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                }
                out.push('}');
            }
            '$' if chars.peek() == Some(&'{') => out.push('$'),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's SslPrincipalMapperTest: valid and invalid rules.
    #[test]
    fn kafkas_valid_and_invalid_rules() {
        for valid in [
            "DEFAULT",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
            "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
            "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
            "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
        ] {
            assert!(PrincipalRules::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
            "",
            " , ,",
        ] {
            assert!(PrincipalRules::parse(invalid).is_err(), "{invalid}");
        }
    }

    /// Kafka's SslPrincipalMapperTest: the mapping, and its documented example.
    #[test]
    fn kafkas_mapping_examples() {
        let rules = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
             RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .unwrap();
        let map = |dn: &str| rules.apply(dn).unwrap();
        assert_eq!(map("CN=Duke,OU=ServiceUsers,O=Org,C=US"), "duke");
        assert_eq!(map("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US"), "duke@sme");
        assert_eq!(map("cn=duke,ou=sme,dc=mycp,dc=com"), "DUKE@SME");
        assert_eq!(map("cN=duke,OU=JavaSoft,O=Sun Microsystems"), "DUKE");
        assert_eq!(map("OU=JavaSoft,O=Sun Microsystems,C=US"), "OU=JavaSoft,O=Sun Microsystems,C=US");
        // The Kafka security documentation's example.
        let docs = PrincipalRules::parse("RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,DEFAULT").unwrap();
        assert_eq!(docs.apply("CN=Alice,OU=Eng").unwrap(), "alice@eng");
        assert_eq!(docs.apply("CN=Alice,OU=Eng,O=X").unwrap(), "alice@eng,o=x", "the lazy group still runs to `$`");
        assert_eq!(docs.apply("OU=Eng,CN=Alice").unwrap(), "OU=Eng,CN=Alice");
        // Escaped commas in a name (testCommaWithWhitespace).
        let commas = PrincipalRules::parse(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT").unwrap();
        assert_eq!(commas.apply(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz").unwrap(), r"Tkac\, Adam");
        // No DEFAULT: a subject no rule matches has no principal.
        let strict = PrincipalRules::parse("RULE:^CN=(.*?),OU=ServiceUsers$/$1/").unwrap();
        assert_eq!(strict.apply("CN=x,OU=Other"), None);
        // `$10` is group 10 in Java only if it exists; a literal `$` stays.
        assert_eq!(java_replacement("$1@$2 costs $ {x}"), "${1}@${2} costs $$ {x}");
    }

    /// Kafka's testRulesSplitting, as the rules it yields.
    #[test]
    fn kafkas_rule_splitting() {
        let count = |text: &str| PrincipalRules::parse(text).map(|r| r.rules.len()).unwrap_or(0);
        assert_eq!(count("RULE:// ,  DEFAULT  "), 2);
        assert_eq!(count("  RULE:  /     /U   ,DEFAULT  "), 2);
        assert_eq!(count("RULE:/.*/L"), 1);
        assert_eq!(count("  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,DEFAULT  "), 3);
        // A `/` escaped inside a pattern belongs to it.
        let slash = PrincipalRules::parse(r"RULE:^CN=(.*?)\/x$/$1/").unwrap();
        assert_eq!(slash.apply("CN=a/x").as_deref(), Some("a"));
        assert_eq!(count("RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/,DEFAULT"), 2);
    }
}
