package org.cxredge.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * One parsed JSON object and its path in the manifest, with typed getters that fail with a
 * {@link BundleFormatException} naming the field, what was expected and what was received.
 *
 * <p>The typing rules mirror the Python loader ({@code cxr_edge.config.from_dict}): an integer
 * field takes only an integer literal (not {@code 2.0}, not {@code true}); a number field takes an
 * integer or a decimal literal; a boolean field takes only {@code true}/{@code false}; a missing
 * key takes the field's default, and a missing required key is an error.
 */
public final class JsonObject {
    private final Map<String, Object> values;
    private final String path;

    private JsonObject(Map<String, Object> values, String path) {
        this.values = values;
        this.path = path;
    }

    /**
     * Wraps a parsed value that must be a JSON object.
     *
     * @param value what {@link Json#parse} returned (or a nested value)
     * @param path where it sits in the document, for error messages ("" for the top level)
     * @throws BundleFormatException the value is not an object
     */
    @SuppressWarnings("unchecked")
    public static JsonObject of(Object value, String path) {
        if (!(value instanceof Map)) {
            throw new BundleFormatException(
                    pathOrTop(path), "not a JSON object", "a JSON object", describe(value));
        }
        return new JsonObject((Map<String, Object>) value, path);
    }

    /** The path of this object ("" at the top level). */
    public String path() {
        return path;
    }

    /** The keys, in document order. */
    public Set<String> keys() {
        return Collections.unmodifiableSet(values.keySet());
    }

    /** The underlying map (unmodifiable view). */
    public Map<String, Object> asMap() {
        return Collections.unmodifiableMap(values);
    }

    /** Whether the key is present (possibly with a null value). */
    public boolean has(String key) {
        return values.containsKey(key);
    }

    /** The raw value of a key (null when absent or null). */
    public Object raw(String key) {
        return values.get(key);
    }

    /** The path of a child key, e.g. {@code models[0].input}. */
    public String child(String key) {
        return path.isEmpty() ? key : path + "." + key;
    }

    /**
     * Refuses keys the format does not define (the manifest schema sets
     * {@code additionalProperties: false}).
     *
     * @param allowed the keys this object may hold
     * @param what name of the object in the message, e.g. "preprocess spec"
     */
    public void requireKnownKeys(Set<String> allowed, String what) {
        List<String> unknown = new ArrayList<>();
        for (String key : values.keySet()) {
            if (!allowed.contains(key)) {
                unknown.add(key);
            }
        }
        if (!unknown.isEmpty()) {
            Collections.sort(unknown);
            throw new BundleFormatException(
                    pathOrTop(path),
                    "unknown keys in " + what,
                    "keys among " + new TreeSet<>(allowed),
                    unknown.toString());
        }
    }

    /** A required string. */
    public String string(String key) {
        Object v = require(key);
        if (!(v instanceof String)) {
            throw wrongType(key, "a string", v);
        }
        return (String) v;
    }

    /** An optional string (the default when absent). */
    public String string(String key, String fallback) {
        return has(key) ? string(key) : fallback;
    }

    /** A required integer that fits an {@code int}. */
    public int integer(String key) {
        long v = longValue(key);
        if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
            throw wrongType(key, "an integer that fits 32 bits", raw(key));
        }
        return (int) v;
    }

    /** An optional integer (the default when absent). */
    public int integer(String key, int fallback) {
        return has(key) ? integer(key) : fallback;
    }

    /** A required integer (64 bits). */
    public long longValue(String key) {
        Object v = require(key);
        if (!(v instanceof Long)) {
            throw wrongType(key, "an integer", v);
        }
        return (Long) v;
    }

    /** An optional integer or null: absent and {@code null} both give null. */
    public Long optionalLong(String key) {
        return raw(key) == null ? null : longValue(key);
    }

    /** A required number (integer or decimal literal). */
    public double number(String key) {
        return toNumber(require(key), key);
    }

    /** An optional number (the default when absent). */
    public double number(String key, double fallback) {
        return has(key) ? number(key) : fallback;
    }

    /** A required boolean. */
    public boolean bool(String key) {
        Object v = require(key);
        if (!(v instanceof Boolean)) {
            throw wrongType(key, "true or false", v);
        }
        return (Boolean) v;
    }

    /** An optional boolean (the default when absent). */
    public boolean bool(String key, boolean fallback) {
        return has(key) ? bool(key) : fallback;
    }

    /** A required nested object. */
    public JsonObject object(String key) {
        return of(require(key), child(key));
    }

    /** An optional nested object: null when absent or {@code null}. */
    public JsonObject optionalObject(String key) {
        return raw(key) == null ? null : object(key);
    }

    /** A required array. */
    @SuppressWarnings("unchecked")
    public List<Object> array(String key) {
        Object v = require(key);
        if (!(v instanceof List)) {
            throw wrongType(key, "a list", v);
        }
        return (List<Object>) v;
    }

    /** A required array of strings. */
    public List<String> stringList(String key) {
        List<Object> items = array(key);
        List<String> out = new ArrayList<>(items.size());
        for (int i = 0; i < items.size(); i++) {
            Object v = items.get(i);
            if (!(v instanceof String)) {
                throw new BundleFormatException(
                        child(key) + "[" + i + "]", "invalid value", "a string", describe(v));
            }
            out.add((String) v);
        }
        return out;
    }

    /** A required array of integers that fit an {@code int}. */
    public int[] intArray(String key) {
        List<Object> items = array(key);
        int[] out = new int[items.size()];
        for (int i = 0; i < out.length; i++) {
            Object v = items.get(i);
            if (!(v instanceof Long) || (Long) v < Integer.MIN_VALUE || (Long) v > Integer.MAX_VALUE) {
                throw new BundleFormatException(
                        child(key) + "[" + i + "]", "invalid value", "an integer", describe(v));
            }
            out[i] = (int) (long) (Long) v;
        }
        return out;
    }

    /** A required array of numbers. */
    public double[] numberArray(String key) {
        return numbers(array(key), child(key));
    }

    /** A required array of arrays of numbers (rows may differ in length; callers check shapes). */
    public double[][] numberMatrix(String key) {
        List<Object> rows = array(key);
        double[][] out = new double[rows.size()][];
        for (int i = 0; i < out.length; i++) {
            Object row = rows.get(i);
            String where = child(key) + "[" + i + "]";
            if (!(row instanceof List)) {
                throw new BundleFormatException(where, "invalid value", "a list of numbers", describe(row));
            }
            @SuppressWarnings("unchecked")
            List<Object> items = (List<Object>) row;
            out[i] = numbers(items, where);
        }
        return out;
    }

    private static double[] numbers(List<Object> items, String where) {
        double[] out = new double[items.size()];
        for (int i = 0; i < out.length; i++) {
            Object v = items.get(i);
            if (!(v instanceof Long) && !(v instanceof Double)) {
                throw new BundleFormatException(where + "[" + i + "]", "invalid value", "a number", describe(v));
            }
            out[i] = ((Number) v).doubleValue();
        }
        return out;
    }

    private double toNumber(Object v, String key) {
        if (v instanceof Long || v instanceof Double) {
            return ((Number) v).doubleValue();
        }
        throw wrongType(key, "a number", v);
    }

    private Object require(String key) {
        if (!values.containsKey(key)) {
            throw new BundleFormatException(
                    child(key), "missing required key", "key '" + key + "'", "no such key");
        }
        return values.get(key);
    }

    private BundleFormatException wrongType(String key, String expected, Object value) {
        return new BundleFormatException(child(key), "invalid value", expected, describe(value));
    }

    private static String pathOrTop(String path) {
        return path.isEmpty() ? "(top level)" : path;
    }

    /** A short description of a parsed JSON value for error messages. */
    public static String describe(Object value) {
        if (value == null) {
            return "null";
        }
        if (value instanceof String) {
            String s = (String) value;
            return "\"" + (s.length() > 40 ? s.substring(0, 40) + "..." : s) + "\"";
        }
        if (value instanceof Map) {
            return "an object";
        }
        if (value instanceof List) {
            return "a list of " + ((List<?>) value).size();
        }
        return String.valueOf(value);
    }
}
