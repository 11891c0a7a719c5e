package org.cxredge.core;

/**
 * A bundle manifest (or a model file it names) is malformed, inconsistent, of an unknown format,
 * or does not match its model: the counterpart of the Python runtime's {@code BundleError}.
 */
public final class BundleFormatException extends CxrEdgeException {
    private static final long serialVersionUID = 1L;

    private final String field;

    /**
     * @param field JSON path of the offending field (e.g. {@code models[0].input.dtype}), or null
     * @param problem what is wrong
     * @param expected what a valid manifest holds there
     * @param received what this one holds
     */
    public BundleFormatException(String field, String problem, String expected, String received) {
        super(problem, field, expected, received);
        this.field = field;
    }

    /** JSON path of the offending field, or null when the problem is not about one field. */
    public String field() {
        return field;
    }
}
