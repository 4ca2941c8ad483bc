/*
 * Summarize a CSV file of temperature readings: the row count, the file's CRC-32 and, per sensor,
 * the count, minimum, maximum, mean and population standard deviation.
 *
 *   Usage: batch-job [FILE]      (default /usr/share/batch-job/readings.csv)
 *
 * The input has a header line, then one "time,sensor,celsius" row per line. The output depends
 * only on the path and the file's bytes, so two runs on the same file print the same text. It links zlib for
 * crc32() and libm for sqrt(), so the binary needs two shared libraries besides libc.
 * Exit status: 0 on success, 1 if the file cannot be read or a row is invalid.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DEFAULT_INPUT "/usr/share/batch-job/readings.csv"
#define MAX_SENSORS 64
#define MAX_NAME 32

struct reading {
    int sensor;
    double celsius;
};

struct sensor {
    char name[MAX_NAME];
    int count;
    double min, max, sum, mean, stddev;
};

static char *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "batch-job: failed to open %s: %s\n", path, strerror(errno));
        return NULL;
    }

    size_t capacity = 4096, used = 0;
    char *data = malloc(capacity + 1);
    size_t got;
    while (data != NULL && (got = fread(data + used, 1, capacity - used, file)) > 0) {
        used += got;
        if (used == capacity) {
            capacity *= 2;
            char *bigger = realloc(data, capacity + 1);
            if (bigger == NULL)
                free(data);
            data = bigger;
        }
    }
    int failed = data == NULL || ferror(file);
    fclose(file);
    if (failed) {
        fprintf(stderr, "batch-job: failed to read %s\n", path);
        free(data);
        return NULL;
    }

    data[used] = '\0';
    *size = used;
    return data;
}

/* Return the index of the sensor called name, adding it if it is new, or -1 if the table is full. */
static int find_or_add_sensor(struct sensor *sensors, int *count, const char *name)
{
    for (int i = 0; i < *count; i++)
        if (strcmp(sensors[i].name, name) == 0)
            return i;
    if (*count == MAX_SENSORS)
        return -1;

    struct sensor *added = &sensors[*count];
    memset(added, 0, sizeof *added);
    strcpy(added->name, name);
    return (*count)++;
}

/* Parse one "time,sensor,celsius" row in place. Returns NULL, or what is wrong with the row. */
static const char *parse_row(char *line, struct sensor *sensors, int *sensor_count,
                             struct reading *out)
{
    char *first_comma = strchr(line, ',');
    char *second_comma = first_comma ? strchr(first_comma + 1, ',') : NULL;
    if (second_comma == NULL)
        return "expected three fields: time,sensor,celsius";

    const char *name = first_comma + 1;
    *second_comma = '\0';
    if (*name == '\0' || strlen(name) >= MAX_NAME)
        return "the sensor name is empty or longer than 31 bytes";
    int sensor = find_or_add_sensor(sensors, sensor_count, name);
    if (sensor < 0)
        return "more than 64 different sensors";

    const char *text = second_comma + 1;
    char *end;
    errno = 0;
    double celsius = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(celsius))
        return "the temperature is not a finite number";

    out->sensor = sensor;
    out->celsius = celsius;
    return NULL;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const struct sensor *)a)->name, ((const struct sensor *)b)->name);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : DEFAULT_INPUT;
    size_t size;
    char *data = read_file(path, &size);
    if (data == NULL)
        return 1;
    unsigned long checksum = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)data, (uInt)size);

    /* Every row but the last ends in a newline, so counting newlines bounds the number of rows. */
    size_t max_rows = 1;
    for (size_t i = 0; i < size; i++)
        max_rows += data[i] == '\n';
    struct reading *readings = malloc(max_rows * sizeof *readings);
    if (readings == NULL) {
        fprintf(stderr, "batch-job: out of memory for %s\n", path);
        return 1;
    }

    struct sensor sensors[MAX_SENSORS];
    int sensor_count = 0, rows = 0, line_number = 0;
    char *next;
    for (char *line = data; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        else if (*line == '\0')
            break;  /* the empty rest after a final newline */
        line_number++;
        line[strcspn(line, "\r")] = '\0';  /* accept CRLF line ends */
        if (line_number == 1)
            continue;  /* the header */

        const char *problem = parse_row(line, sensors, &sensor_count, &readings[rows]);
        if (problem != NULL) {
            fprintf(stderr, "batch-job: %s:%d: invalid row: %s\n", path, line_number, problem);
            return 1;
        }
        rows++;
    }

    for (int i = 0; i < rows; i++) {
        struct sensor *s = &sensors[readings[i].sensor];
        double value = readings[i].celsius;
        if (s->count == 0 || value < s->min)
            s->min = value;
        if (s->count == 0 || value > s->max)
            s->max = value;
        s->sum += value;
        s->count++;
    }

    /* The standard deviation takes a second pass over the rows, once every mean is known. */
    double squares[MAX_SENSORS] = {0};
    for (int i = 0; i < sensor_count; i++)
        sensors[i].mean = sensors[i].sum / sensors[i].count;
    for (int i = 0; i < rows; i++) {
        double deviation = readings[i].celsius - sensors[readings[i].sensor].mean;
        squares[readings[i].sensor] += deviation * deviation;
    }
    for (int i = 0; i < sensor_count; i++)
        sensors[i].stddev = sqrt(squares[i] / sensors[i].count);

    /* Sorting by name makes the printed order independent of the row order. */
    qsort(sensors, (size_t)sensor_count, sizeof sensors[0], compare_names);

    printf("input: %s\n", path);
    printf("rows: %d\n", rows);
    printf("crc32: %08lx\n", checksum);
    printf("%-12s %5s %8s %8s %8s %8s\n", "sensor", "n", "min", "max", "mean", "stddev");
    for (int i = 0; i < sensor_count; i++) {
        const struct sensor *s = &sensors[i];
        printf("%-12s %5d %8.2f %8.2f %8.2f %8.2f\n", s->name, s->count, s->min, s->max, s->mean,
               s->stddev);
    }

    free(readings);
    free(data);
    return 0;
}
