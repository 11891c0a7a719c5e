package org.cxredge.core;

/**
 * Base class of every error the cxr-edge core raises on purpose.
 *
 * <p>Like the Python runtime's {@code CxrEdgeError}, each error says what went wrong, what was
 * expected and what was received, so the app can show one precise line to the user. Messages
 * never contain patient identifiers.
 */
public class CxrEdgeException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String problem;
    private final String expected;
    private final String received;

    /**
     * @param problem what went wrong, in one sentence
     * @param expected what the code needed (may be null)
     * @param received what it got instead (may be null)
     */
    public CxrEdgeException(String problem, String expected, String received) {
        this(problem, null, expected, received);
    }

    /**
     * @param problem what went wrong, in one sentence
     * @param location where (a field, a character position), appended as " at ..." (may be null)
     * @param expected what the code needed (may be null)
     * @param received what it got instead (may be null)
     */
    protected CxrEdgeException(String problem, String location, String expected, String received) {
        super(format(location == null ? problem : problem + " at " + location, expected, received));
        this.problem = problem;
        this.expected = expected;
        this.received = received;
    }

    /** What went wrong, without the location and the expected/received parts. */
    public String problem() {
        return problem;
    }

    /** What the code needed, or null. */
    public String expected() {
        return expected;
    }

    /** What it got instead, or null. */
    public String received() {
        return received;
    }

    private static String format(String problem, String expected, String received) {
        StringBuilder out = new StringBuilder(problem);
        if (expected != null) {
            out.append("; expected ").append(expected);
        }
        if (received != null) {
            out.append("; received ").append(received);
        }
        return out.toString();
    }
}
