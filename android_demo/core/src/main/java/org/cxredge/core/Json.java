package org.cxredge.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict JSON parser (RFC 8259) with no dependencies, for bundle manifests.
 *
 * <p>Values map to plain Java types: objects to {@link LinkedHashMap} (key order kept; a repeated
 * key keeps its last value, as Python's {@code json} does), arrays to {@link ArrayList}, strings to
 * {@link String}, {@code true}/{@code false} to {@link Boolean}, {@code null} to Java {@code null},
 * integer literals (no fraction, no exponent) that fit to {@link Long}, every other number to
 * {@link Double}. Like Python's {@code json.loads}, which wrote the manifests, the non-standard
 * literals {@code NaN}, {@code Infinity} and {@code -Infinity} are accepted. Anything else that
 * is not JSON (trailing commas, comments, single quotes, raw control characters in strings, a byte
 * order mark, text after the value) raises {@link JsonSyntaxException} with its position.
 */
public final class Json {
    /** Deepest nesting accepted (keeps a hostile file from overflowing the stack). */
    public static final int MAX_DEPTH = 512;

    private final String text;
    private int pos;

    private Json(String text) {
        this.text = text;
    }

    /**
     * Parses one JSON document.
     *
     * @param text the whole document
     * @return the value (see the class comment for the Java types)
     * @throws JsonSyntaxException the text is not exactly one JSON value
     */
    public static Object parse(String text) {
        if (text == null) {
            throw new JsonSyntaxException("no JSON text", 0, "a JSON document", "null");
        }
        Json parser = new Json(text);
        parser.skipWhitespace();
        Object value = parser.readValue(0);
        parser.skipWhitespace();
        if (parser.pos != text.length()) {
            throw parser.error("extra data after the JSON value", "end of text");
        }
        return value;
    }

    private Object readValue(int depth) {
        if (depth > MAX_DEPTH) {
            throw error("JSON nested too deeply", "at most " + MAX_DEPTH + " levels");
        }
        if (pos >= text.length()) {
            throw error("unexpected end of JSON", "a value");
        }
        char c = text.charAt(pos);
        switch (c) {
            case '{':
                return readObject(depth);
            case '[':
                return readArray(depth);
            case '"':
                return readString();
            case 't':
                expectWord("true");
                return Boolean.TRUE;
            case 'f':
                expectWord("false");
                return Boolean.FALSE;
            case 'n':
                expectWord("null");
                return null;
            case 'N':
                expectWord("NaN");
                return Double.NaN;
            case 'I':
                expectWord("Infinity");
                return Double.POSITIVE_INFINITY;
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return readNumber();
                }
                throw error("unexpected character", "a JSON value");
        }
    }

    private Map<String, Object> readObject(int depth) {
        Map<String, Object> out = new LinkedHashMap<>();
        pos++; // '{'
        skipWhitespace();
        if (peek() == '}') {
            pos++;
            return out;
        }
        while (true) {
            skipWhitespace();
            if (peek() != '"') {
                throw error("object key is not a string", "a double-quoted key");
            }
            String key = readString();
            skipWhitespace();
            if (peek() != ':') {
                throw error("missing ':' after an object key", "':'");
            }
            pos++;
            skipWhitespace();
            out.put(key, readValue(depth + 1));
            skipWhitespace();
            char c = peek();
            if (c == ',') {
                pos++;
                continue;
            }
            if (c == '}') {
                pos++;
                return out;
            }
            throw error("object not continued or closed", "',' or '}'");
        }
    }

    private List<Object> readArray(int depth) {
        List<Object> out = new ArrayList<>();
        pos++; // '['
        skipWhitespace();
        if (peek() == ']') {
            pos++;
            return out;
        }
        while (true) {
            skipWhitespace();
            out.add(readValue(depth + 1));
            skipWhitespace();
            char c = peek();
            if (c == ',') {
                pos++;
                continue;
            }
            if (c == ']') {
                pos++;
                return out;
            }
            throw error("array not continued or closed", "',' or ']'");
        }
    }

    private String readString() {
        pos++; // opening quote
        StringBuilder out = new StringBuilder();
        while (true) {
            if (pos >= text.length()) {
                throw error("unterminated string", "a closing '\"'");
            }
            char c = text.charAt(pos++);
            if (c == '"') {
                return out.toString();
            }
            if (c < 0x20) {
                pos--;
                throw error("raw control character in a string", "an escape such as \\n");
            }
            if (c != '\\') {
                out.append(c);
                continue;
            }
            if (pos >= text.length()) {
                throw error("unterminated escape", "an escape character");
            }
            char e = text.charAt(pos++);
            switch (e) {
                case '"':
                    out.append('"');
                    break;
                case '\\':
                    out.append('\\');
                    break;
                case '/':
                    out.append('/');
                    break;
                case 'b':
                    out.append('\b');
                    break;
                case 'f':
                    out.append('\f');
                    break;
                case 'n':
                    out.append('\n');
                    break;
                case 'r':
                    out.append('\r');
                    break;
                case 't':
                    out.append('\t');
                    break;
                case 'u':
                    out.append(readHex4());
                    break;
                default:
                    pos--;
                    throw error("invalid escape", "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX");
            }
        }
    }

    private char readHex4() {
        if (pos + 4 > text.length()) {
            throw error("truncated \\u escape", "four hex digits");
        }
        int value = 0;
        for (int i = 0; i < 4; i++) {
            int digit = Character.digit(text.charAt(pos), 16);
            if (digit < 0) {
                throw error("invalid \\u escape", "four hex digits");
            }
            value = value * 16 + digit;
            pos++;
        }
        return (char) value;
    }

    private Object readNumber() {
        int start = pos;
        if (peek() == '-') {
            pos++;
            if (text.startsWith("Infinity", pos)) {
                pos += "Infinity".length();
                return Double.NEGATIVE_INFINITY;
            }
        }
        if (peek() == '0') {
            pos++;
        } else if (isDigit(peek())) {
            while (isDigit(peek())) {
                pos++;
            }
        } else {
            throw error("invalid number", "a digit");
        }
        boolean integral = true;
        if (peek() == '.') {
            integral = false;
            pos++;
            if (!isDigit(peek())) {
                throw error("invalid number", "a digit after '.'");
            }
            while (isDigit(peek())) {
                pos++;
            }
        }
        if (peek() == 'e' || peek() == 'E') {
            integral = false;
            pos++;
            if (peek() == '+' || peek() == '-') {
                pos++;
            }
            if (!isDigit(peek())) {
                throw error("invalid number", "a digit in the exponent");
            }
            while (isDigit(peek())) {
                pos++;
            }
        }
        String literal = text.substring(start, pos);
        if (integral) {
            try {
                return Long.parseLong(literal);
            } catch (NumberFormatException tooLong) {
                return Double.parseDouble(literal);
            }
        }
        return Double.parseDouble(literal);
    }

    private void expectWord(String word) {
        if (!text.startsWith(word, pos)) {
            throw error("invalid literal", "'" + word + "'");
        }
        pos += word.length();
    }

    private void skipWhitespace() {
        while (pos < text.length()) {
            char c = text.charAt(pos);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return;
            }
            pos++;
        }
    }

    private char peek() {
        return pos < text.length() ? text.charAt(pos) : '\0';
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    private JsonSyntaxException error(String problem, String expected) {
        String received;
        if (pos >= text.length()) {
            received = "end of text";
        } else {
            int end = Math.min(text.length(), pos + 12);
            received = "'" + text.substring(pos, end).replace("\n", "\\n") + "'";
        }
        return new JsonSyntaxException(problem, pos, expected, received);
    }
}
