package org.cxredge.core;

import java.util.Arrays;

/**
 * Connected components of the non-zero pixels of a binary image with 8-connectivity, as
 * {@code cv2.connectedComponentsWithStats(binary, connectivity=8)} counts them: label 0 is the
 * background, labels 1..n the components, each with its pixel area.
 *
 * <p>Labels are numbered in raster order of each component's first pixel. OpenCV's block-based
 * labelling can number two components differently; the numbering only matters to the lung crop
 * when two components have exactly the same area (see {@link LungCrop}).
 */
public final class ConnectedComponents {
    private final int[] labels;
    private final int[] areas;
    private final int count;

    private ConnectedComponents(int[] labels, int[] areas, int count) {
        this.labels = labels;
        this.areas = areas;
        this.count = count;
    }

    /** Labels the non-zero pixels of a {@code width x height} binary image. */
    public static ConnectedComponents of(boolean[] foreground, int width, int height) {
        int[] labels = new int[width * height];
        int[] stack = new int[width * height];
        int[] areas = new int[16];
        int next = 0;
        for (int start = 0; start < labels.length; start++) {
            if (!foreground[start] || labels[start] != 0) {
                continue;
            }
            next++;
            if (next >= areas.length) {
                areas = Arrays.copyOf(areas, areas.length * 2);
            }
            int top = 0;
            stack[top++] = start;
            labels[start] = next;
            int area = 0;
            while (top > 0) {
                int p = stack[--top];
                area++;
                int x = p % width;
                int y = p / width;
                for (int dy = -1; dy <= 1; dy++) {
                    int ny = y + dy;
                    if (ny < 0 || ny >= height) {
                        continue;
                    }
                    for (int dx = -1; dx <= 1; dx++) {
                        int nx = x + dx;
                        if (nx < 0 || nx >= width) {
                            continue;
                        }
                        int q = ny * width + nx;
                        if (foreground[q] && labels[q] == 0) {
                            labels[q] = next;
                            stack[top++] = q;
                        }
                    }
                }
            }
            areas[next] = area;
        }
        return new ConnectedComponents(labels, areas, next);
    }

    /** Number of components (background excluded). */
    public int count() {
        return count;
    }

    /** Area in pixels of component {@code label} (1..count). */
    public int area(int label) {
        return areas[label];
    }

    /** The label of every pixel (0 = background), row-major (not a copy). */
    public int[] labels() {
        return labels;
    }
}
