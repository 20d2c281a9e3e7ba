-- AlterTable
ALTER TABLE "partners" ADD COLUMN "city" TEXT;
