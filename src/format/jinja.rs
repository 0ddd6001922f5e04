//! The Jinja environment chat templates render in: minijinja set up as transformers sets up
//! Jinja2 for `apply_chat_template` (`trim_blocks`, `lstrip_blocks`, loop controls, and its
//! `raise_exception`, `strftime_now` and `tojson`), with Python's string methods
//! (`minijinja-contrib`'s pycompat) and Python's whitespace wherever Jinja2 strips, so a
//! template renders byte for byte as transformers renders it.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// The environment a chat template is compiled in.
pub(super) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
    env.set_syntax(syntax.expect("the default delimiters"));
    env.set_unknown_method_callback(string_methods);
    env.add_filter("trim", trim);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

/// Python's `str.isspace`: Unicode's White_Space and the separators U+001C to U+001F,
/// which Rust's `char::is_whitespace` leaves out.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip(chars)` from either end.
fn python_strip<'a>(text: &'a str, chars: Option<&str>, start: bool, end: bool) -> &'a str {
    let strips = |c: char| chars.map_or_else(|| is_python_space(c), |chars| chars.contains(c));
    let text = if start { text.trim_start_matches(strips) } else { text };
    if end {
        text.trim_end_matches(strips)
    } else {
        text
    }
}

/// Jinja2's `trim` filter: `str(value).strip(chars)`.
fn trim(value: &Value, chars: Option<&str>) -> String {
    python_strip(&value.to_string(), chars, true, true).to_owned()
}

/// `minijinja-contrib`'s Python string methods, with `strip`, `lstrip`, `rstrip` and `split`
/// on Python's whitespace as [`trim`].
fn string_methods(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    let (Some(text), []) = (value.as_str(), args) else {
        return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args);
    };
    Ok(match method {
        "strip" => Value::from(python_strip(text, None, true, true)),
        "lstrip" => Value::from(python_strip(text, None, true, false)),
        "rstrip" => Value::from(python_strip(text, None, false, true)),
        "split" => text.split(is_python_space).filter(|word| !word.is_empty()).map(Value::from).collect(),
        _ => return minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    })
}

/// transformers' `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' `strftime_now(format)`, `datetime.now().strftime(format)`, in UTC (a browser
/// and a server agree on it) for the codes chat templates use.
fn strftime_now(format: &str) -> Result<String, Error> {
    let seconds = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?
        .as_secs();
    strftime(seconds, format)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// `seconds` since the Unix epoch, UTC, formatted as Python's `strftime` in the C locale.
fn strftime(seconds: u64, format: &str) -> Result<String, Error> {
    let days = seconds / 86_400;
    let (hour, minute, second) = (seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (a Thursday).
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    let month_name = MONTHS[month as usize - 1];
    let weekday = WEEKDAYS[((days + 3) % 7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let code = chars.next();
        out.push_str(&match code {
            Some('d') => format!("{day:02}"),
            Some('-') if chars.clone().next() == Some('d') => {
                chars.next();
                day.to_string()
            }
            Some('m') => format!("{month:02}"),
            Some('Y') => year.to_string(),
            Some('y') => format!("{:02}", year % 100),
            Some('b') => month_name[..3].to_owned(),
            Some('B') => month_name.to_owned(),
            Some('a') => weekday[..3].to_owned(),
            Some('A') => weekday.to_owned(),
            Some('H') => format!("{hour:02}"),
            Some('M') => format!("{minute:02}"),
            Some('S') => format!("{second:02}"),
            Some('%') => "%".to_owned(),
            other => {
                let code = other.map_or(String::new(), String::from);
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: %{code} is not one of the codes webjudge formats (d -d m Y y b B a A H M S %)"
                    ),
                ));
            }
        });
    }
    Ok(out)
}

/// transformers' `tojson`: Python's `json.dumps(value, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` with those keywords, unlike Jinja2's, which escapes
/// HTML characters.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent.filter(|i| !i.is_none()) {
        None => None,
        Some(i) if i.kind() == ValueKind::String => Some(i.to_string()),
        Some(i) => Some(" ".repeat(usize::try_from(i)?)),
    };
    // json.dumps: ", " between items without an indent, "," with one; ": " after keys.
    let (item, key) = match separators.filter(|s| !s.is_none()) {
        Some(pair) => (pair.get_item_by_index(0)?.to_string(), pair.get_item_by_index(1)?.to_string()),
        None => (if indent.is_some() { "," } else { ", " }.to_owned(), ": ".to_owned()),
    };
    let dumper = JsonDumper {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item,
        key,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    dumper.dump(value, 0, &mut out)?;
    Ok(out)
}

/// Python's `json.dumps` over a template value.
struct JsonDumper {
    ensure_ascii: bool,
    indent: Option<String>,
    item: String,
    key: String,
    sort_keys: bool,
}

impl JsonDumper {
    fn dump(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => match f64::try_from(value.clone()) {
                Ok(float) if value.as_i64().is_none() && float.fract() == 0.0 && float.is_finite() => {
                    out.push_str(&format!("{float:.1}"))
                }
                _ => out.push_str(&value.to_string()),
            },
            ValueKind::String => self.string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container('[', ']', items.len(), depth, out, |i, out| self.dump(&items[i], depth + 1, out))?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort();
                }
                self.container('{', '}', keys.len(), depth, out, |i, out| {
                    self.string(&keys[i].to_string(), out);
                    out.push_str(&self.key);
                    self.dump(&value.get_item(&keys[i])?, depth + 1, out)
                })?;
            }
            _ => return Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: cannot serialize {value}"))),
        }
        Ok(())
    }

    fn container(
        &self,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        let newline = |out: &mut String, depth: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                out.push_str(&indent.repeat(depth));
            }
        };
        for i in 0..len {
            if i > 0 {
                out.push_str(&self.item);
            }
            newline(out, depth + 1);
            item(i, out)?;
        }
        if len > 0 {
            newline(out, depth);
        }
        out.push(close);
        Ok(())
    }

    /// A JSON string as Python escapes it.
    fn string(&self, text: &str, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if c < ' ' || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, context: Value) -> Result<String, Error> {
        environment().render_str(source, context)
    }

    #[test]
    fn python_whitespace_and_string_methods() {
        let text = Value::from("\u{1c} a b \n");
        let context = Value::from_pairs([("text", text)]);
        assert_eq!(
            render("[{{ text|trim }}][{{ text.strip() }}][{{ text.rstrip() }}]", context.clone()).unwrap(),
            "[a b][a b][\u{1c} a b]"
        );
        assert_eq!(render("{{ text.split() }}{{ 'ab'.startswith('a') }}", context).unwrap(), "['a', 'b']True");
    }

    #[test]
    fn tojson_is_python_s_json_dumps() {
        let value = Value::from_pairs([
            ("name", Value::from("<é>\n\"")),
            ("list", Value::from(vec![Value::from(1), Value::from(2.0), Value::from(true), Value::from(())])),
        ]);
        let context = Value::from_pairs([("v", value)]);
        assert_eq!(
            render("{{ v|tojson }}", context.clone()).unwrap(),
            r#"{"name": "<é>\n\"", "list": [1, 2.0, true, null]}"#
        );
        assert_eq!(
            render("{{ v.list|tojson(indent=2) }}|{{ v.name|tojson(ensure_ascii=true) }}", context).unwrap(),
            "[\n  1,\n  2.0,\n  true,\n  null\n]|\"<\\u00e9>\\n\\\"\""
        );
    }

    #[test]
    fn strftime_formats_utc_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        assert_eq!(
            strftime(1_721_999_109, "%d %b %Y|%-d %B %y|%a %A|%H:%M:%S|%m|%%").unwrap(),
            "26 Jul 2024|26 July 24|Fri Friday|13:05:09|07|%"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %A").unwrap(), "1970-01-01 Thursday");
        assert_eq!(strftime(951_782_400, "%Y-%m-%d").unwrap(), "2000-02-29");
        assert!(strftime(0, "%Q").is_err());
    }

    #[test]
    fn raise_exception_refuses() {
        let error = render("{{ raise_exception('Only user and assistant roles are supported!') }}", Value::UNDEFINED)
            .unwrap_err();
        assert!(error.to_string().contains("Only user and assistant roles are supported!"), "{error}");
        assert_eq!(
            render(
                "{% for i in [1, 2, 3] %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}",
                Value::UNDEFINED
            )
            .unwrap(),
            "1"
        );
    }
}
