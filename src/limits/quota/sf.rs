//! The part of RFC 9651 (Structured Field Values) that the `RateLimit` fields use: a List
//! of Items with Parameters, parsed strictly (any syntax error fails the whole field, as
//! RFC 9651 §4.2 requires). Bare items are kept only as far as the quota needs them:
//! Integers, and Strings or Tokens as names. Decimals, Byte Sequences, Booleans and Dates
//! are checked and kept as [`Bare::Other`]; Inner Lists and Display Strings fail the field.

/// A bare item, as far as the quota needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bare<'a> {
    /// An Integer (at most 15 digits, RFC 9651 §3.3.1).
    Int(i64),
    /// A String's content between the quotes, escapes kept (equal strings compare equal).
    Str(&'a str),
    /// A Token.
    Token(&'a str),
    /// Any other well-formed bare item (Decimal, Byte Sequence, Boolean, Date).
    Other,
}

/// One member of a List: its bare item and parameters in order (a repeated key: the last
/// one counts, see [`Item::param`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Item<'a> {
    /// The bare item.
    pub(super) value: Bare<'a>,
    /// The parameters, in order.
    pub(super) params: Vec<(&'a str, Bare<'a>)>,
}

impl<'a> Item<'a> {
    /// The value of parameter `key` (the last one, if repeated).
    pub(super) fn param(&self, key: &str) -> Option<Bare<'a>> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// The name of the item, if it is a String or a Token.
    pub(super) fn name(&self) -> Option<&'a str> {
        match self.value {
            Bare::Str(s) | Bare::Token(s) => Some(s),
            _ => None,
        }
    }
}

/// The most members a List may have before the field is ignored (real fields have a few).
const MAX_MEMBERS: usize = 64;

/// Parses `input` as a List; `None` on any syntax error, on an empty field, on Inner Lists
/// and past [`MAX_MEMBERS`] members.
pub(super) fn parse_list(input: &str) -> Option<Vec<Item<'_>>> {
    let mut p = Parser {
        s: input.trim_matches(|c| c == ' ' || c == '\t'),
        pos: 0,
    };
    let mut items = Vec::new();
    while !p.done() {
        if items.len() == MAX_MEMBERS {
            return None;
        }
        items.push(p.item()?);
        p.skip_ows();
        if p.done() {
            break;
        }
        p.expect(b',')?;
        p.skip_ows();
        if p.done() {
            return None; // a trailing comma
        }
    }
    (!items.is_empty()).then_some(items)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Advances over bytes while `f` holds; the slice passed over.
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        // Only ASCII bytes are ever accepted by the callers' predicates: char boundaries.
        &self.s[start..self.pos]
    }

    fn item(&mut self) -> Option<Item<'a>> {
        let value = self.bare()?;
        let mut params = Vec::new();
        while self.peek() == Some(b';') {
            self.pos += 1;
            while self.peek() == Some(b' ') {
                self.pos += 1;
            }
            let key = self.key()?;
            let v = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare()?
            } else {
                Bare::Other // Boolean true
            };
            if params.len() == MAX_MEMBERS {
                return None;
            }
            params.push((key, v));
        }
        Some(Item { value, params })
    }

    fn key(&mut self) -> Option<&'a str> {
        match self.peek()? {
            b'a'..=b'z' | b'*' => Some(self.take_while(
                |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'),
            )),
            _ => None,
        }
    }

    fn bare(&mut self) -> Option<Bare<'a>> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'A'..=b'Z' | b'a'..=b'z' | b'*' => Some(Bare::Token(self.take_while(is_token_char))),
            b':' => {
                self.pos += 1;
                self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                self.expect(b':')?;
                Some(Bare::Other)
            }
            b'?' => {
                self.pos += 1;
                matches!(self.peek()?, b'0' | b'1').then(|| self.pos += 1)?;
                Some(Bare::Other)
            }
            b'@' => {
                self.pos += 1;
                match self.number()? {
                    Bare::Int(_) => Some(Bare::Other),
                    _ => None, // a Date is an Integer
                }
            }
            _ => None, // Inner Lists, Display Strings, anything else
        }
    }

    /// An Integer or a Decimal (RFC 9651 §4.2.4).
    fn number(&mut self) -> Option<Bare<'a>> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int = self.take_while(|b| b.is_ascii_digit());
        if int.is_empty() {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac = self.take_while(|b| b.is_ascii_digit());
            return (int.len() <= 12 && (1..=3).contains(&frac.len())).then_some(Bare::Other);
        }
        if int.len() > 15 {
            return None;
        }
        // At most 15 digits: fits an i64.
        let n: i64 = int.parse().ok()?;
        Some(Bare::Int(if negative { -n } else { n }))
    }

    fn string(&mut self) -> Option<Bare<'a>> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' => {
                    let content = &self.s[start..self.pos];
                    self.pos += 1;
                    return Some(Bare::Str(content));
                }
                b'\\' => {
                    self.pos += 1;
                    matches!(self.peek()?, b'"' | b'\\').then(|| self.pos += 1)?;
                }
                0x20..=0x7e => self.pos += 1,
                _ => return None,
            }
        }
    }
}

/// `tchar / ":" / "/"` (RFC 9651 §3.3.4).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b)
}
