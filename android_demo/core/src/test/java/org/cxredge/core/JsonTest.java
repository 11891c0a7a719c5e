package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JsonTest {
    @Test
    void parsesEveryValueType() {
        Object v = Json.parse(" {\"a\": [1, -2, 3.5, 1e3, -0.25E-2, true, false, null, \"x\"], \"b\": {}} ");
        Map<?, ?> m = (Map<?, ?>) v;
        List<?> a = (List<?>) m.get("a");
        assertEquals(1L, a.get(0));
        assertEquals(-2L, a.get(1));
        assertEquals(3.5, a.get(2));
        assertEquals(1000.0, a.get(3));
        assertEquals(-0.0025, a.get(4));
        assertEquals(Boolean.TRUE, a.get(5));
        assertEquals(Boolean.FALSE, a.get(6));
        assertNull(a.get(7));
        assertEquals("x", a.get(8));
        assertTrue(((Map<?, ?>) m.get("b")).isEmpty());
    }

    @Test
    void decodesEscapesAndUnicode() {
        assertEquals("q\"b\\s/\b\f\n\r\t\u00e9\ud83d\ude00", Json.parse("\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\""));
        assertEquals("ü", Json.parse("\"ü\""));
    }

    @Test
    void keepsKeyOrderAndTheLastDuplicate() {
        Map<?, ?> m = (Map<?, ?>) Json.parse("{\"z\": 1, \"a\": 2, \"z\": 3}");
        assertEquals(Arrays.asList("z", "a"), Arrays.asList(m.keySet().toArray()));
        assertEquals(3L, m.get("z"));
    }

    @Test
    void acceptsPythonsNonFiniteLiterals() {
        List<?> a = (List<?>) Json.parse("[NaN, Infinity, -Infinity]");
        assertTrue(Double.isNaN((Double) a.get(0)));
        assertEquals(Double.POSITIVE_INFINITY, a.get(1));
        assertEquals(Double.NEGATIVE_INFINITY, a.get(2));
    }

    @Test
    void bigIntegersBecomeDoubles() {
        assertEquals(1e20, Json.parse("100000000000000000000"));
        assertEquals(Long.MAX_VALUE, Json.parse(String.valueOf(Long.MAX_VALUE)));
    }

    @Test
    void refusesInvalidJsonWithItsPosition() {
        String[][] bad = {
            {"", "unexpected end of JSON"},
            {"{\"a\": 1,}", "object key is not a string"},
            {"[1, 2,]", "unexpected character"},
            {"{'a': 1}", "object key is not a string"},
            {"[01]", "array not continued or closed"},
            {"[1.]", "invalid number"},
            {"[-]", "invalid number"},
            {"\"tab\there\"", "raw control character"},
            {"\"\\x\"", "invalid escape"},
            {"\"\\u12g4\"", "invalid \\u escape"},
            {"\"open", "unterminated string"},
            {"[true false]", "array not continued or closed"},
            {"nul", "invalid literal"},
            {"{} {}", "extra data"},
            {"// comment\n{}", "unexpected character"},
            {"\ufeff{}", "unexpected character"},
            {"{\"a\" 1}", "missing ':'"},
        };
        for (String[] c : bad) {
            JsonSyntaxException e = assertThrows(JsonSyntaxException.class, () -> Json.parse(c[0]), c[0]);
            assertTrue(e.getMessage().contains(c[1]), c[0] + " -> " + e.getMessage());
            assertTrue(e.position() >= 0 && e.position() <= c[0].length());
            assertTrue(e.expected() != null && e.received() != null, e.getMessage());
        }
        JsonSyntaxException e = assertThrows(JsonSyntaxException.class, () -> Json.parse("[1, 2,]"));
        assertEquals(6, e.position());
        assertEquals("a JSON value", e.expected());
        assertEquals("']'", e.received());
    }

    @Test
    void refusesHostileNesting() {
        StringBuilder deep = new StringBuilder();
        for (int i = 0; i < Json.MAX_DEPTH + 2; i++) {
            deep.append('[');
        }
        JsonSyntaxException e = assertThrows(JsonSyntaxException.class, () -> Json.parse(deep.toString()));
        assertTrue(e.getMessage().contains("nested too deeply"));
    }

    @Test
    void parsesTheRealManifest() {
        Object v = Json.parse(GoldenFiles.text(GoldenFiles.bundle().resolve("manifest.json")));
        JsonObject o = JsonObject.of(v, "");
        assertEquals(3, o.integer("format_version"));
        assertEquals(Arrays.asList("covid", "normal", "pneumonia"), o.stringList("labels"));
        JsonObject pre = o.object("preprocess");
        assertEquals(0.08, pre.number("border"));
        assertEquals(8, pre.integer("clahe_tiles"));
        assertEquals(BundleManifest.fromJson(o.asMap()).models().size(), o.array("models").size());
        assertTrue(o.has("segmenter") && o.has("card"));
    }
}
